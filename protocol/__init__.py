"""Wire formats of driftsync: pure functions over bytes, shared by the relay, peers and simulations.

Modules, one job each: ``errors`` (the error hierarchy and wire codes), ``codec`` (strict canonical
msgpack), ``signing`` (domain separation), ``ids`` (printable checksummed ids and codes), ``keys``
(users, devices, certificates, revocations, key files), ``chain`` (membership chain),
``keyschedule`` (keys, wrapping, LAN tokens), ``envelope`` (signed encrypted CRDT updates),
``auth`` (relay login), ``vv`` (version vectors), ``frames`` (length-prefixed frames),
``messages`` (every wire message), ``stream`` (sans-IO message connection), ``invite``,
``linking``, ``recovery``. The byte-level specification is docs/protocol.md.
"""
