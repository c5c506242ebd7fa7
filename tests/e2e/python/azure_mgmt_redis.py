"""The official Azure SDK for Python (azure-mgmt-redis) driving `cacheplane serve` end to end,
over HTTPS trusting cacheplane's local CA, with the SDK's own bearer-token policy.

Usage: azure_mgmt_redis.py BASE_URL TOKEN CA_FILE
Run by tests/e2e/serve.rs; exits non-zero (with the failed assertion) on any mismatch.
"""
import socket
import sys
import time

import redis
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.credentials import AccessToken
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

base_url, token, ca = sys.argv[1], sys.argv[2], sys.argv[3]
assert base_url.startswith("https://"), base_url


class StaticToken:
    """A credential handing out the control plane's token (the SDK's bearer policy sends
    it, over https only)."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken(token, int(time.time()) + 3600)


client = RedisManagementClient(
    StaticToken(),
    "sub-sdk",
    base_url=base_url,
    credential_scopes=["https://management.azure.com/.default"],
    connection_verify=ca,
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
assert got.ssl_port and got.ssl_port != got.port, got
# Created with enable_non_ssl_port: both ports answer, TLS on sslPort.
r = redis.Redis(host=got.host_name, port=got.port, password=keys.primary_key)
assert r.set("order:1", "paid")
tls = redis.Redis(host=got.host_name, port=got.ssl_port, password=keys.primary_key, ssl=True, ssl_ca_certs=ca)
assert tls.get("order:1") == b"paid"

# The SDK's update sends enableNonSslPort false unless told otherwise, as against Azure:
# the plain port closes, the data stays.
updated = client.redis.begin_update(rg, name, RedisUpdateParameters(tags={"team": "sdk", "tier": "gold"})).result()
assert updated.tags == {"team": "sdk", "tier": "gold"}, updated.tags
assert updated.enable_non_ssl_port is False, updated.enable_non_ssl_port
try:
    socket.create_connection((got.host_name, got.port), timeout=5).close()
    raise AssertionError("the non-TLS port still accepts connections")
except ConnectionRefusedError:
    pass

new_keys = client.redis.regenerate_key(rg, name, RedisRegenerateKeyParameters(key_type=RedisKeyType.PRIMARY))
assert new_keys.primary_key != keys.primary_key and new_keys.secondary_key == keys.secondary_key

rebooted = client.redis.force_reboot(rg, name, RedisRebootParameters(reboot_type=RebootType.ALL_NODES))
assert "restored" in rebooted.message, rebooted.message
# The data came back from the cache's AOF in its storage account, under the new key.
r = redis.Redis(host=got.host_name, port=got.ssl_port, password=new_keys.primary_key, ssl=True, ssl_ca_certs=ca)
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
