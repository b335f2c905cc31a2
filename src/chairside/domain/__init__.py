"""Pure rules, no I/O: plans and prices, billing, search keys."""
