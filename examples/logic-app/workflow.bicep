// Deploys examples/logic-app/workflow.json as a Logic App (Consumption) with its parameters set.
// Enabling the workflow makes Logic Apps call the bridge's subscribe at once; disabling or
// deleting it calls unsubscribe (DELETE /api/subscriptions?callbackUrl=...).
//   az deployment group create -g <rg> -f examples/logic-app/workflow.bicep \
//     -p bridgeUrl=<BRIDGE_URL> bridgeFunctionKey=<function key>
@description('Base URL of the bridge (deployment output BRIDGE_URL), e.g. https://func-abc123.azurewebsites.net.')
param bridgeUrl string

@secure()
@description('A function key of the bridge (az functionapp keys list).')
param bridgeFunctionKey string

param name string = 'calendly-invitees'
param location string = resourceGroup().location

resource workflow 'Microsoft.Logic/workflows@2019-05-01' = {
  name: name
  location: location
  properties: {
    state: 'Enabled'
    definition: loadJsonContent('workflow.json').definition
    parameters: {
      bridgeUrl: { value: bridgeUrl }
      bridgeFunctionKey: { value: bridgeFunctionKey }
    }
  }
}

output workflowName string = workflow.name
