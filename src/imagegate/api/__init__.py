"""HTTP only: routers, auth dependencies, error mapping."""
