"""Rules a team sets on its work: review policies, the promotion gate, and the CI run that checks them."""
