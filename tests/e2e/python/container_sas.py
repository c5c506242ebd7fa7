"""Prints a container SAS URL (read, add, create, write, delete, list; one hour) for the
container named by argv[2] of the Azure account in connection string argv[1], as Azure's
export and import take a container. Uses the Azure Storage SDK's own signing."""
import datetime
import sys

from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

conn, container = sys.argv[1], sys.argv[2]
service = BlobServiceClient.from_connection_string(conn)
sas = generate_container_sas(
    account_name=service.account_name,
    container_name=container,
    account_key=service.credential.account_key,
    permission=ContainerSasPermissions(read=True, add=True, create=True, write=True, delete=True, list=True),
    expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1),
)
print(f"{service.url.rstrip('/')}/{container}?{sas}")
