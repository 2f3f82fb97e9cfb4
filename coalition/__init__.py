"""Coalition: members, the points ledger and the program rules."""
