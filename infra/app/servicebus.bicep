// Service Bus namespace for Service Bus targets: a queue with duplicate detection on, so a
// retried delivery (same message id = the bridge's delivery id) is dropped.
param location string
param tags object
param name string
param queueName string

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: { name: 'Standard', tier: 'Standard' }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled' // the Function App reaches it without VNet integration (Entra ID only)
  }
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: queueName
  properties: {
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'P1D'
    deadLetteringOnMessageExpiration: true
    maxDeliveryCount: 10
  }
}

output name string = namespace.name
// The host name from the namespace's own endpoint (https://<name>.servicebus.<cloud suffix>:443/),
// not a hard-coded public-cloud suffix.
output fullyQualifiedNamespace string = split(split(split(namespace.properties.serviceBusEndpoint, '://')[1], '/')[0], ':')[0]
