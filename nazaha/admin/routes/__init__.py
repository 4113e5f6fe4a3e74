"""The console's routers, one per area."""
