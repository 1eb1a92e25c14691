"""The one error hierarchy of `storage`: every failure a caller can act on has its own type.

Callers catch :class:`StorageError` to handle anything this package raises; the subclasses say
*what* went wrong so a peer can decide between "fetch the block elsewhere" (an integrity error),
"ask for the key" (:class:`UnknownEpochError`) and "tell the user the disk is full"
(:class:`StoreFullError`). Messages are written for a person reading a log.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error raised by the storage package."""


class ParameterError(StorageError):
    """Chunking or store parameters that cannot work (e.g. a key of the wrong length)."""


class IntegrityError(StorageError):
    """Bytes do not match what they claim to be: tampered, truncated, corrupt or foreign."""


class MalformedBlockError(IntegrityError):
    """A sealed block whose header or layout is not a valid driftsync block."""


class BlockIdMismatchError(IntegrityError):
    """A block's SHA-256 differs from the block id it was stored or requested under."""


class BlockAuthenticationError(IntegrityError):
    """A block failed AEAD verification: tampered, truncated, or sealed for another share/key."""


class ChunkIdMismatchError(IntegrityError):
    """An opened chunk does not hash to the chunk id its manifest lists."""


class ContentMismatchError(IntegrityError):
    """A restored file's size or content hash differs from the version being restored."""


class WrongBlockTypeError(IntegrityError):
    """A block of one type (data, manifest) was presented where the other was expected."""


class WrongEpochError(IntegrityError):
    """A block's key epoch differs from the epoch its manifest entry names."""


class MalformedManifestError(IntegrityError):
    """Manifest bytes that do not decode to a valid manifest."""


class UnknownEpochError(StorageError):
    """No sealing key is known for the key epoch a block was sealed under."""

    def __init__(self, epoch: int) -> None:
        super().__init__(
            f"no sealing key for key epoch {epoch}: this device has not received that epoch's "
            "key yet (or was removed from the share before it started)"
        )
        self.epoch = epoch


class BlockTooLargeError(StorageError):
    """A block over :data:`storage.sealing.MAX_BLOCK_SIZE`; stores and the relay refuse it."""


class FileTooLargeError(StorageError):
    """A manifest over its size limit (a file of more than 3.2 billion chunks)."""


class BlockNotFoundError(StorageError):
    """The store does not hold a block that was asked for (or a manifest references)."""

    def __init__(self, block_id_hex: str, where: str) -> None:
        super().__init__(f"block {block_id_hex} is not in {where}")
        self.block_id_hex = block_id_hex


class StoreError(StorageError):
    """A block store failed to read or write (I/O error, S3 error after retries)."""


class StoreFullError(StoreError):
    """The store ran out of space (ENOSPC/EDQUOT); nothing half-written was left behind."""


class SourceError(StorageError):
    """The file being ingested could not be read (or a restore target could not be written)."""
