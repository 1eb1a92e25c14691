"""The device: what a person runs on each of their devices.

``peer.engine`` (the sync engine: one task per share reconciling folder, folder tree and relay),
``peer.remote`` (the relay client behind the ``RelayLink`` interface), ``peer.device`` (identity,
config and per-share state on disk), ``peer.cli`` (the ``drift`` commands), ``peer.demo``
(``make demo``); ``peer.fs`` (the FileSystem seam), ``peer.local`` (names, ignore rules) and
``peer.lan`` (LAN discovery and transport).
"""
