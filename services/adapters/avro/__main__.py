"""`python -m services.adapters.avro`: record each changed top-level schema in the history."""

from services.adapters.avro.schemas import snapshot_history

if __name__ == "__main__":
    for written_path in snapshot_history():
        print(f"wrote {written_path}")
