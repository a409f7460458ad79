"""Built-in components. Every module here is a pluggy plugin, loaded exactly like a third-party one:
adding a component is adding one module with a ``register_*`` hook, and no edit elsewhere."""
