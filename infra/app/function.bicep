// The Function App on the Flex Consumption plan (Python 3.11), with identity-based storage and
// no publishing credentials. App settings are a separate `config/appsettings` resource (as in
// Azure-Samples' Flex quickstarts) so BRIDGE_PUBLIC_URL can use the app's real default host name.
//
// Flex Consumption deprecates (and in newer regions rejects, ARM error 51021) many classic site
// properties and app settings: no siteConfig.ftpsState / alwaysOn / linuxFxVersion /
// functionAppScaleLimit, no FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION /
// WEBSITE_RUN_FROM_PACKAGE / WEBSITE_CONTENTSHARE... The runtime, scale and deployment live in
// functionAppConfig. tests/test_infra.py keeps Microsoft's deprecation list and fails on any of them.
param location string
@description('Tags of every resource here; the site also gets the azd-service-name tag, the plan does not.')
param tags object
@description('azd service name (azure.yaml): azd deploys to the one resource tagged azd-service-name with it.')
param serviceName string
param name string
param planName string
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainer string
param appInsightsConnectionString string
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048
@description('App settings the bridge reads (name -> value); BRIDGE_PUBLIC_URL and the platform settings are added here.')
param appSettings object

// Endpoints come from the account's own properties, never from a cloud's DNS suffix, so the
// template is right in every Azure cloud.
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true // Linux: Flex Consumption runs on Linux only
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    keyVaultReferenceIdentity: identityId // Key Vault references in app settings (MANAGEMENT_KEY) resolve with the app's identity
    httpsOnly: true
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  // Storage is identity-based: no AzureWebJobsStorage connection string. The service URIs, and NOT
  // __accountName: the WebJobs storage client provider prefers an accountName over the URIs and
  // builds https://<account>.<service>.core.windows.net from it, wrong outside the public cloud.
  // The bridge reads the same __tableServiceUri / __queueServiceUri for its tables and retry queue.
  resource settings 'config' = {
    name: 'appsettings'
    properties: union(appSettings, {
      AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
      AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
      AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identityClientId
      APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
      BRIDGE_PUBLIC_URL: 'https://${site.properties.defaultHostName}'
    })
  }
}

// FTP and SCM basic-auth publishing off: deployment uses Entra ID only. These two policies are
// the Flex way to turn FTP off (siteConfig.ftpsState is rejected there). `location` as in the
// Azure Verified Module for sites (avm/res/web/site), which Microsoft's Flex quickstarts use.
resource ftp 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  location: location
  properties: { allow: false }
}

resource scm 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  location: location
  properties: { allow: false }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
