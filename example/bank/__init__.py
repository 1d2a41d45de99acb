"""The bank of the original article: accounts and the transfers that move their balance."""
