"""Teach Pillow to open HEIC/HEIF photos. Importing this module registers the opener once."""

from __future__ import annotations

import pillow_heif

pillow_heif.register_heif_opener()
