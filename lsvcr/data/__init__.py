"""LSVCR datasets: the official layout on disk, and the ways to get one.

layout.py   the official LSVCR dataset directory (photo.json, comment.json, rec.*.json, comm_rank.*.json,
            id lists, meta.json, comm_slates.*.json): read, validate, write (atomically); ``Dataset``
build.py    a dataset from a simulation's event log (`lsvcr data build`; BuildConfig, this step's options)
recbole.py  RecBole atomic files (NAME.inter + NAME.item) as a video-only dataset (`lsvcr data import-recbole`)
loader.py   examples -> right-padded index tensors, batches trimmed to their longest history
"""
