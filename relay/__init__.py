"""The driftsync relay: stores sealed blocks and encrypted updates, orders each share's chain and
log, decides who may read and write, and wakes devices up; it can read no file, name or tree.

``relay.service.RelayService`` is the transport-independent core; ``relay.http.create_app`` its
aiohttp adapter; ``relay.cli`` is ``drift relay``.
"""
