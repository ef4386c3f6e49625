"""(floor) The real API whose feature store runs a script that does nothing: each call sends the same keys and
arguments and gets a reply of the same size (every feature unknown). What it adds over the API without a
store is the floor of a store round trip under load, whatever the script computes."""

from __future__ import annotations

from redis.asyncio import Redis

from api import app as api_app
from fraudflow.behaviour.definitions import N_STATE
from fraudflow.behaviour.online import OnlineStore, feature_store
from fraudflow.config import Settings

NOTHING = f'return string.rep("nan,", #ARGV * {N_STATE} - 1) .. "nan"'  # one argument per transaction


class FloorStore(OnlineStore):
    def __init__(self, redis: Redis) -> None:
        super().__init__(redis)
        self._script = redis.register_script(NOTHING)


def floor_store(settings: Settings) -> OnlineStore | None:
    store = feature_store(settings)  # the API's own client settings
    return None if store is None else FloorStore(store.redis)


# The app's lifespan looks the factory up when the app starts (api.app imports it, without re-exporting it).
api_app.feature_store = floor_store  # type: ignore[attr-defined]
app = api_app.create_app()
