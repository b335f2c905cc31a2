"""Backups: generations of a site (metadata snapshot + content-addressed blobs + manifest) to a folder or an S3
bucket under Object Lock; verify, restore, drill (docs/backups.md)."""
