"""Security tests: each one an attack by an ordinary signed-in user, and what must happen."""
