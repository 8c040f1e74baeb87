"""Business rules, with no HTTP in them."""
