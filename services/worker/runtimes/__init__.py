"""Step runtimes: how a worker runs one task of each step type, and what it reports.

contract.py is the bottom: the ``StepRuntime`` protocol (its delivery contract), the outcome
types and ``failure``. Each step type has its module — shell.py and python.py (which run code
in a child process in its own process group: child_process.py, child_steps.py), http.py (with
http_allow.py) and sql.py (with sql_roles.py) — and imports the contract only; registry.py
imports them all and maps step types to them. Nothing here imports the registry back. This
file imports nothing, so importing one runtime never loads the others (nor httpx, asyncpg).
"""
