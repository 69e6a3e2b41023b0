"""Ingestion: read articles from files, chunk them, and index them into the store."""
