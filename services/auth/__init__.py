"""Auth: accounts, users, roles, plans, sites, sectors, industries, seed keywords, tokens,
API keys, and the account-level AI configuration (prompts, integration settings)."""
