// Calendly trigger bridge on Azure Functions (Flex Consumption, Python 3.11).
// Deploy with `azd up`, or `az deployment group create -g <rg> -f infra/main.bicep -p environmentName=<name>`.
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('Name of the environment; used in resource names and the azd-env-name tag.')
param environmentName string

@description('Location of every resource.')
param location string = resourceGroup().location

@description('Object id of the deploying user or group: granted Key Vault Secrets Officer so it can store the PAT. Empty: none.')
param principalId string = ''

@description('Name of the Key Vault secret that holds the Calendly personal access token.')
param calendlyPatSecretName string = 'calendly-pat'

@description('Calendly API base URL.')
param calendlyApiBase string = 'https://api.calendly.com'

@description('Optional comma-separated host suffixes targets must match, e.g. logic.azure.com,flow.microsoft.com.')
param allowedTargetHosts string = ''

@description('Delivery attempts before a delivery is dead (kept for replay).')
param deliveryMaxAttempts int = 8

@description('NCRONTAB schedule of the reconciliation timer.')
param reconcileSchedule string = '0 */15 * * * *'

@description('Maximum instances the Flex Consumption plan scales to.')
param maximumInstanceCount int = 40

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = '${abbrs.webSitesFunctions}${resourceToken}'
var deploymentContainer = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var deliveryQueue = 'calendly-deliveries'
var serviceBusQueue = 'calendly-events'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}'
  location: location
  tags: tags
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    appInsightsName: '${abbrs.insightsComponents}${resourceToken}'
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: tags
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    deploymentContainer: deploymentContainer
    deliveryQueue: deliveryQueue
  }
}

module vault 'app/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    tags: tags
    name: '${abbrs.keyVaultVaults}${resourceToken}'
  }
}

module messaging 'app/servicebus.bicep' = {
  name: 'servicebus'
  params: {
    location: location
    tags: tags
    name: '${abbrs.serviceBusNamespaces}${resourceToken}'
    queueName: serviceBusQueue
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  params: {
    identityPrincipalId: identity.properties.principalId
    userPrincipalId: principalId
    storageAccountName: storage.outputs.name
    keyVaultName: vault.outputs.name
    serviceBusNamespaceName: messaging.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
  }
}

// Every setting the code reads in Azure. Deliberately NOT set here (local development only):
// CALENDLY_PAT (the PAT lives in Key Vault), BRIDGE_SQLITE_PATH (Table Storage is used),
// SERVICEBUS_CONNECTION (managed identity is used), AzureWebJobsStorage as a connection string,
// AzureWebJobsStorage__tableServiceUri / AzureWebJobsStorage__queueServiceUri (derived from the
// account name), BRIDGE_LOG_LEVEL (host.json sets log levels on Azure).
module bridge 'app/function.bicep' = {
  name: 'function'
  params: {
    location: location
    tags: union(tags, { 'azd-service-name': 'bridge' })
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    identityId: identity.id
    identityClientId: identity.properties.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainer: deploymentContainer
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    maximumInstanceCount: maximumInstanceCount
    appSettings: {
      CALENDLY_API_BASE: calendlyApiBase
      KEY_VAULT_URL: vault.outputs.uri
      CALENDLY_PAT_SECRET_NAME: calendlyPatSecretName
      CALENDLY_PAT_CACHE_SECONDS: '300'
      AZURE_CLIENT_ID: identity.properties.clientId
      BRIDGE_PUBLIC_URL: 'https://${functionAppName}.azurewebsites.net'
      BRIDGE_TABLE_PREFIX: 'calendlybridge'
      SIGNATURE_TOLERANCE_SECONDS: '180'
      ALLOW_INSECURE_TARGETS: 'false'
      ALLOWED_TARGET_HOSTS: allowedTargetHosts
      DELIVERY_QUEUE: deliveryQueue
      DELIVERY_MAX_ATTEMPTS: string(deliveryMaxAttempts)
      RECONCILE_SCHEDULE: reconcileSchedule
      SERVICEBUS_FULLY_QUALIFIED_NAMESPACE: messaging.outputs.fullyQualifiedNamespace
    }
  }
  dependsOn: [rbac]
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output BRIDGE_URL string = 'https://${bridge.outputs.defaultHostName}'
output FUNCTION_APP_NAME string = bridge.outputs.name
output KEY_VAULT_NAME string = vault.outputs.name
output KEY_VAULT_URL string = vault.outputs.uri
output SERVICEBUS_NAMESPACE string = messaging.outputs.fullyQualifiedNamespace
output SERVICEBUS_QUEUE string = serviceBusQueue
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName
