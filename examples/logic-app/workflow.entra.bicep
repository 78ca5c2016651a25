// Deploys examples/logic-app/workflow.entra.json: a Logic App (Consumption) with a system-assigned
// managed identity that subscribes to and unsubscribes from the bridge with an Entra ID token
// (MANAGEMENT_AUTH=entra|both) instead of a function key. Deploy it disabled, give its identity an
// app role on the bridge (examples/logic-app/README.md), then enable it:
//   az deployment group create -g <rg> -f examples/logic-app/workflow.entra.bicep \
//     -p bridgeUrl=<BRIDGE_URL> bridgeAudience=api://<ENTRA_CLIENT_ID>
@description('Base URL of the bridge (deployment output BRIDGE_URL), e.g. https://func-abc123.azurewebsites.net.')
param bridgeUrl string

@description('Application ID URI of the bridge\'s app registration (ENTRA_APP_ID_URI, by default api://<ENTRA_CLIENT_ID>).')
param bridgeAudience string

@description('Enabled subscribes at once; the identity needs its app role first, so the default is Disabled.')
@allowed(['Enabled', 'Disabled'])
param state string = 'Disabled'

param name string = 'calendly-invitees-entra'
param location string = resourceGroup().location

resource workflow 'Microsoft.Logic/workflows@2019-05-01' = {
  name: name
  location: location
  identity: { type: 'SystemAssigned' }
  properties: {
    state: state
    definition: loadJsonContent('workflow.entra.json').definition
    parameters: {
      bridgeUrl: { value: bridgeUrl }
      bridgeAudience: { value: bridgeAudience }
    }
  }
}

output workflowName string = workflow.name
@description('Object id of the Logic App\'s identity: assign it an app role of the bridge (Calendly.Organization for organization scope).')
output principalId string = workflow.identity.principalId
