// Calendly trigger bridge on Azure Functions (Flex Consumption, Python 3.11).
// Resource-group scope, so both deployment routes use this one file unchanged:
//   azd up                       (azd asks for, or reads AZURE_RESOURCE_GROUP, and passes main.parameters.json)
//   az deployment group create -g <rg> -f infra/main.bicep -p environmentName=<name> [principalId=<object id>]
// See docs/deploy.md.
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('Name of the environment; part of the resource token and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Location of every resource; must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({ azd: { type: 'location' } })
param location string = resourceGroup().location

@description('Object id of the deploying user (or group / service principal): granted Key Vault Secrets Officer so it can store the PAT. Empty: none.')
param principalId string = ''

@description('Name of the Key Vault secret that holds the Calendly personal access token.')
param calendlyPatSecretName string = 'calendly-pat'

@description('Calendly API base URL.')
param calendlyApiBase string = 'https://api.calendly.com'

@description('Seconds the PAT read from Key Vault is cached (a 401 from Calendly re-reads it at once).')
param calendlyPatCacheSeconds int = 300

@description('Accepted clock skew of Calendly-Webhook-Signature timestamps, in seconds.')
param signatureToleranceSeconds int = 180

@description('Optional comma-separated host suffixes targets must match, e.g. logic.azure.com,flow.microsoft.com,powerautomate.com. Empty: any public https host.')
param allowedTargetHosts string = ''

@description('Delivery attempts before a delivery is dead (kept for replay).')
param deliveryMaxAttempts int = 8

@description('Subscriptions one signed-in owner may hold (admins and key holders: no limit).')
@minValue(1)
param maxSubscriptionsPerOwner int = 50

@description('Subscribe/unsubscribe/test calls a signed-in maker may make per minute and worker (0: no limit).')
@minValue(0)
param calendlyCallsPerCallerPerMinute int = 30

@description('NCRONTAB schedule of the reconciliation timer (the app setting RECONCILE_SCHEDULE, which the timer trigger reads as %RECONCILE_SCHEDULE%).')
@minLength(1)
param reconcileSchedule string = '0 */15 * * * *'

@description('Percent of the Calendly per-minute rate limit one reconciliation run may use (the rest stays for subscribes).')
@minValue(1)
@maxValue(100)
param reconcileRateSharePercent int = 20

@description('Maximum instances the Flex Consumption plan scales to (1-1000).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Storage replication. GRS by default; Standard_LRS or Standard_ZRS in regions without a paired region.')
@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_RAGRS', 'Standard_GZRS', 'Standard_RAGZRS'])
param storageSkuName string = 'Standard_GRS'

@description('E-mail address Azure Monitor alerts go to (dead deliveries, reconcile errors, 5xx or 401 bursts on callbacks, Key Vault failures). Empty: the alert rules still fire (Azure Monitor > Alerts) but notify nobody.')
param alertEmail string = ''

@description('Rejected (401) Calendly callbacks within 5 minutes that raise the burst alert.')
@minValue(1)
param unauthorizedBurstThreshold int = 10

// Management API authentication (README "Who can do what"; docs/deploy.md "Microsoft Entra ID").
@description('Who may call the management API: function_key (function keys, checked by the host), entra (Entra ID tokens, checked by the app) or both.')
@allowed(['function_key', 'entra', 'both'])
param managementAuth string = 'function_key'

@description('entra/both: application (client) id of the bridge\'s app registration (docs/deploy.md shows how to create it).')
param entraClientId string = ''

@description('entra/both: tenant of the app registration (default: this deployment\'s tenant).')
param entraTenantId string = tenant().tenantId

@description('entra/both: application ID URI of the app registration; empty: api://<entraClientId>.')
param entraAppIdUri string = ''

@description('entra/both: further tenant ids (comma-separated) whose tokens are accepted; their users are makers at most.')
param entraAllowedTenants string = ''

@description('entra/both: client application ids (comma-separated azp/appid) allowed to call; empty: any client.')
param entraAllowedClientApps string = ''

@description('App role of admins, who see and manage every subscription.')
param entraAdminRole string = 'Bridge.Admin'

@description('App role needed for organization and group scope.')
param entraOrganizationRole string = 'Calendly.Organization'

@description('entra/both: accepted issuer templates, {tenant} standing for each tenant id; empty: the app\'s default, Entra ID\'s public cloud (v2 and v1 issuers). Sovereign clouds: their login hosts.')
param entraIssuers string = ''

@description('entra/both: Entra ID\'s signing keys (JWKS); empty: the app\'s default, the public cloud\'s. Sovereign clouds: their login host.')
param entraJwksUrl string = ''

@description('both: name of the Key Vault secret holding the management key (create it before switching to both).')
param managementKeySecretName string = 'bridge-management-key'

var abbrs = loadJsonContent('abbreviations.json')
// The resource group is part of the token: two resource groups in one subscription can hold the
// same environment name and region without their globally unique names (storage, vault) colliding.
var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))
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
    skuName: storageSkuName
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

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  params: {
    location: location
    tags: tags
    namePrefix: 'alert-${resourceToken}-'
    actionGroupName: '${abbrs.insightsActionGroups}${resourceToken}'
    appInsightsName: monitoring.outputs.appInsightsName
    alertEmail: alertEmail
    unauthorizedBurstThreshold: unauthorizedBurstThreshold
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

// Every setting the code reads in Azure is set below or in app/function.bicep (the identity-based
// AzureWebJobsStorage__* with the account's own blob/queue/table service URIs, APPLICATIONINSIGHTS_*,
// and BRIDGE_PUBLIC_URL = https://<default host name>). RECONCILE_SCHEDULE and DELIVERY_QUEUE are
// always set: function_app.py's triggers name them as %RECONCILE_SCHEDULE% and %DELIVERY_QUEUE%,
// which the Functions host resolves from app settings at startup.
// Deliberately NOT set in Azure:
//   CALENDLY_PAT (the PAT lives in Key Vault), BRIDGE_SQLITE_PATH (Table Storage is the store),
//   SERVICEBUS_CONNECTION (the identity is used), AzureWebJobsStorage as a connection string,
//   AzureWebJobsStorage__accountName (the host prefers it over the service URIs and builds
//   public-cloud URLs from it; app/function.bicep sets the account's own blob/queue/table URIs),
//   BRIDGE_LOG_LEVEL (host.json sets log levels on Azure).
module bridge 'app/function.bicep' = {
  name: 'function'
  params: {
    location: location
    tags: tags
    serviceName: 'bridge' // azure.yaml's service; tagged on the site only (azd wants exactly one host per service)
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    identityId: identity.id
    identityClientId: identity.properties.clientId
    storageAccountName: storage.outputs.name
    deploymentContainer: deploymentContainer
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    maximumInstanceCount: maximumInstanceCount
    appSettings: {
      CALENDLY_API_BASE: calendlyApiBase
      KEY_VAULT_URL: vault.outputs.uri
      CALENDLY_PAT_SECRET_NAME: calendlyPatSecretName
      CALENDLY_PAT_CACHE_SECONDS: string(calendlyPatCacheSeconds)
      AZURE_CLIENT_ID: identity.properties.clientId
      BRIDGE_TABLE_PREFIX: 'calendlybridge'
      SIGNATURE_TOLERANCE_SECONDS: string(signatureToleranceSeconds)
      ALLOW_INSECURE_TARGETS: 'false'
      ALLOWED_TARGET_HOSTS: allowedTargetHosts
      DELIVERY_QUEUE: deliveryQueue
      DELIVERY_MAX_ATTEMPTS: string(deliveryMaxAttempts)
      MAX_SUBSCRIPTIONS_PER_OWNER: string(maxSubscriptionsPerOwner)
      CALENDLY_CALLS_PER_CALLER_PER_MINUTE: string(calendlyCallsPerCallerPerMinute)
      DELIVERY_RETENTION_HOURS: '72'
      DEAD_DELIVERY_RETENTION_DAYS: '14'
      RECONCILE_SCHEDULE: reconcileSchedule
      RECONCILE_RATE_SHARE_PERCENT: string(reconcileRateSharePercent)
      SERVICEBUS_FULLY_QUALIFIED_NAMESPACE: messaging.outputs.fullyQualifiedNamespace
      MANAGEMENT_AUTH: managementAuth
      // A Key Vault reference, resolved by the platform with the app's identity (function.bicep keyVaultReferenceIdentity).
      MANAGEMENT_KEY: managementAuth == 'both' ? '@Microsoft.KeyVault(VaultName=${vault.outputs.name};SecretName=${managementKeySecretName})' : ''
      ENTRA_TENANT_ID: managementAuth == 'function_key' ? '' : entraTenantId
      ENTRA_ALLOWED_TENANTS: entraAllowedTenants
      ENTRA_ALLOWED_CLIENT_APPS: entraAllowedClientApps
      ENTRA_CLIENT_ID: entraClientId
      ENTRA_APP_ID_URI: entraAppIdUri
      ENTRA_ISSUERS: entraIssuers
      ENTRA_JWKS_URL: entraJwksUrl
      ENTRA_ADMIN_ROLE: entraAdminRole
      ENTRA_ORGANIZATION_ROLE: entraOrganizationRole
    }
  }
  // The host starts as soon as the settings land: its identity must already hold its roles.
  dependsOn: [rbac]
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output BRIDGE_URL string = 'https://${bridge.outputs.defaultHostName}'
output FUNCTION_APP_NAME string = bridge.outputs.name
output BRIDGE_IDENTITY_CLIENT_ID string = identity.properties.clientId
output KEY_VAULT_NAME string = vault.outputs.name
output KEY_VAULT_URL string = vault.outputs.uri
output CALENDLY_PAT_SECRET_NAME string = calendlyPatSecretName
output SERVICEBUS_NAMESPACE string = messaging.outputs.fullyQualifiedNamespace
output SERVICEBUS_QUEUE string = serviceBusQueue
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName
