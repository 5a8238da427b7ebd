"""Sponsor banks and the ID mapper: the connector protocol, the clients, financial addresses, and the example bank
and mapper servers (separate parties, reached over HTTP only)."""
