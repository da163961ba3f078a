"""A multi-tenant chat: tenant-scoped rooms, messages and typing indicators (see README.md)."""
