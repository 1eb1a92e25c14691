"""driftsync storage core: chunking, hashing, sealing, manifests, block stores, streaming I/O.

Modules, bottom up (docs/storage.md is the byte-exact specification):

* ``errors``     the StorageError hierarchy
* ``keys``       ShareKeys, SealingKey, Keyring: raw 32-byte secrets handed in by ``protocol``
* ``hashing``    chunk ids (keyed BLAKE3), block ids (SHA-256), content hashes
* ``chunking``   FastCDC-2020 with a per-share seed; ChunkingParams (frozen per share)
* ``padding``    Padmé with a 4 KiB floor
* ``sealing``    seal_block/open_block, seal_chunk/open_chunk; MAX_BLOCK_SIZE
* ``manifest``   Manifest, PartsManifest, FileRef; strict encode/decode
* ``blockstore`` the async BlockStore seam; ``dirstore`` and ``s3store`` implement it
* ``ingest``, ``restore``, ``index``, ``tree``   streaming file and folder pipelines
* ``memory``     opt-in allocator tuning for applications
* ``demo``, ``cli``   the ``drift demo`` and ``drift store`` commands

This package never imports ``protocol``, ``crdt`` or anything above them.
"""
