"""The official Azure SDK for Python (azure-mgmt-redis) driving `cacheplane serve` end to end.

Usage: azure_mgmt_redis.py BASE_URL TOKEN
Run by tests/e2e/sdk.rs; exits non-zero (with the failed assertion) on any mismatch.
"""
import sys

import redis
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.redis import RedisManagementClient
from azure.mgmt.redis.models import (
    RebootType,
    RedisCreateParameters,
    RedisKeyType,
    RedisRebootParameters,
    RedisRegenerateKeyParameters,
    RedisUpdateParameters,
    Sku,
)

base_url, token = sys.argv[1], sys.argv[2]


class StaticBearer(SansIOHTTPPolicy):
    """The SDK's own bearer policy refuses plain http: send the token ourselves."""

    def on_request(self, request):
        request.http_request.headers["Authorization"] = f"Bearer {token}"


class NoCredential:
    def get_token(self, *scopes, **kwargs):
        raise AssertionError("the static bearer policy replaces the credential")


client = RedisManagementClient(
    NoCredential(),
    "sub-sdk",
    base_url=base_url,
    authentication_policy=StaticBearer(),
    polling_interval=0.05,
)
rg, name = "rg-sdk", "sdk-cache"

# Create (long-running: begin_create(...).result() polls Azure-AsyncOperation).
created = client.redis.begin_create(
    rg,
    name,
    RedisCreateParameters(
        location="westeurope",
        sku=Sku(name="Premium", family="P", capacity=1),
        enable_non_ssl_port=True,
        redis_configuration={"aof_backup_enabled": "true"},
        tags={"team": "sdk"},
    ),
).result()
assert created.provisioning_state == "Succeeded", created.provisioning_state
assert created.name == name and created.type == "Microsoft.Cache/Redis", created
assert created.redis_configuration.aof_backup_enabled == "true", created.redis_configuration

got = client.redis.get(rg, name)
assert got.id == created.id and got.tags == {"team": "sdk"}, got
assert got.host_name and got.port, got
assert [c.name for c in client.redis.list_by_resource_group(rg)] == [name]
assert name in [c.name for c in client.redis.list_by_subscription()]

keys = client.redis.list_keys(rg, name)
r = redis.Redis(host=got.host_name, port=got.port, password=keys.primary_key)
assert r.set("order:1", "paid")
assert r.get("order:1") == b"paid"

updated = client.redis.begin_update(rg, name, RedisUpdateParameters(tags={"team": "sdk", "tier": "gold"})).result()
assert updated.tags == {"team": "sdk", "tier": "gold"}, updated.tags

new_keys = client.redis.regenerate_key(rg, name, RedisRegenerateKeyParameters(key_type=RedisKeyType.PRIMARY))
assert new_keys.primary_key != keys.primary_key and new_keys.secondary_key == keys.secondary_key

rebooted = client.redis.force_reboot(rg, name, RedisRebootParameters(reboot_type=RebootType.ALL_NODES))
assert "restored" in rebooted.message, rebooted.message
# The data came back from the cache's AOF in its storage account, under the new key.
r = redis.Redis(host=got.host_name, port=got.port, password=new_keys.primary_key)
assert r.get("order:1") == b"paid"

# A refusal arrives as the SDK's HttpResponseError with ARM's code.
try:
    client.redis.begin_create(
        rg, "bad", RedisCreateParameters(location="westeurope", sku=Sku(name="Premium", family="P", capacity=9))
    ).result()
    raise AssertionError("a capacity of 9 was accepted")
except HttpResponseError as e:
    assert e.status_code == 400 and e.error.code, (e.status_code, e.error)

client.redis.begin_delete(rg, name).result()
try:
    client.redis.get(rg, name)
    raise AssertionError("the deleted cache is still there")
except ResourceNotFoundError:
    pass
print("sdk ok")
