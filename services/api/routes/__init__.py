"""One router per resource; `services.api.app.create_app` mounts them."""
