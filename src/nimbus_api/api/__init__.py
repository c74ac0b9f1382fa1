"""The HTTP edge: app factory, dependencies (auth, transaction), routers."""
