"""Stage 4, the model registry: numbered versions with their artifacts and lineage, aliases moved by
compare-and-swap, the ledger of every move (:mod:`.registry`), the typed records of what it stores
(:mod:`.records`), copying versions between stores (:mod:`.publish`) and the consistency check
(:mod:`.doctor`)."""
