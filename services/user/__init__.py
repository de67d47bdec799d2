"""The User service: accounts in PostgreSQL, argon2id password hashes, and signed JWTs."""
