"""Billing: credit balances and the ledger, holds, usage, packages, invoices, payments."""
