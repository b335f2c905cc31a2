"""Moving a clinic in and out: the SSD migration import and the whole-contract export (docs/import-export.md).

`importer` reads a clinic's folder tree (or a Chairside export) and stores it through `targets`
(the services of a data folder, or a server through the SDK); `exporter` writes a contract from
`sources` as a BagIt bag with `names` safe on every file system. Both keep a `journal` so a run
stopped at any moment continues, and hash every byte as read and as stored / read back.
"""
