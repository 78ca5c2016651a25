// Azure Monitor alert rules, so operators notice trouble without reading logs: a delivery went
// dead, reconcile reported errors, Calendly's callbacks were answered 5xx or with a burst of 401s,
// the Key Vault read of the PAT failed. Each rule is a log search alert on Application Insights
// over the bridge's key=value log lines (see docs/observability.md, which shows every query and
// how to run it by hand). With an alertEmail the rules notify an action group that e-mails it;
// without one the rules still fire and show in Azure Monitor > Alerts, but notify nobody.
param location string
param tags object
@description('Prefix of the rule names (one set of rules per environment).')
param namePrefix string
param actionGroupName string
param appInsightsName string
@description('E-mail address the alerts go to. Empty: no action group (alerts fire, notify nobody).')
param alertEmail string = ''
@description('Rejected (401) Calendly callbacks in 5 minutes that count as a burst.')
@minValue(1)
param unauthorizedBurstThreshold int = 10

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// Action groups are global resources.
resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'calendly' // at most 12 characters: the sender name of SMS/e-mail
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// Every query reads the log lines the code emits (`<area> outcome=<outcome> key=value ...`, see
// docs/observability.md) or the Functions host's request telemetry. parse-kv with a regex turns
// each `key=value` into a column. tests/test_infra.py checks each prefix and key against shared/.
var alerts = [
  {
    name: 'dead-delivery'
    displayName: 'Calendly bridge: a delivery went dead'
    description: 'A delivery used up DELIVERY_MAX_ATTEMPTS and is dead (kept for replay: POST /api/deliveries/{id}/replay). One alert per subscription.'
    severity: 1
    window: 'PT5M'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: [ { name: 'subscription', operator: 'Include', values: [ '*' ] } ] // one alert per subscription
    query: '''
traces
| where message startswith "delivery outcome=dead"
| parse-kv message as (outcome: string, subscription: string, delivery: string, event: string, attempt: int, error: string) with (regex=@"(\w+)=('[^']*'|\S+)")
| project timestamp, subscription, delivery, event, attempt, error
'''
  }
  {
    name: 'reconcile-errors'
    displayName: 'Calendly bridge: reconcile reported errors'
    description: 'The reconcile timer could not check, recreate or delete some Calendly webhooks (Calendly unreachable, the PAT rejected, storage failing).'
    severity: 2
    window: 'PT15M'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: []
    query: '''
traces
| where message startswith "reconcile outcome="
| parse-kv message as (outcome: string, checked: int, recreated: int, deleted: int, errors: int) with (regex=@"(\w+)=('[^']*'|\S+)")
| where outcome == "errors" or errors > 0
| project timestamp, outcome, checked, recreated, deleted, errors
'''
  }
  {
    name: 'callback-5xx'
    displayName: 'Calendly bridge: callbacks answered 5xx'
    description: 'The bridge answered Calendly with a 5xx (storage or the bridge failing); Calendly retries, then disables the webhook, which reconcile recreates.'
    severity: 1
    window: 'PT5M'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: []
    query: '''
requests
| where name == "calendly_event" and toint(resultCode) >= 500
| extend subscription = extract(@"/calendly/events/([^/?]+)", 1, url)
| project timestamp, subscription, resultCode, duration, operation_Id
'''
  }
  {
    name: 'callback-401-burst'
    displayName: 'Calendly bridge: burst of rejected (401) callbacks'
    description: 'Many callbacks failed signature verification: a webhook signing key out of step, or someone probing the public callback route.'
    severity: 2
    window: 'PT5M'
    operator: 'GreaterThanOrEqual'
    threshold: unauthorizedBurstThreshold
    dimensions: []
    query: '''
traces
| where message startswith "callback outcome=rejected"
| parse-kv message as (outcome: string, subscription: string, status: int) with (regex=@"(\w+)=('[^']*'|\S+)")
| project timestamp, subscription, status
'''
  }
  {
    name: 'keyvault-failures'
    displayName: 'Calendly bridge: Key Vault reads fail'
    description: 'The bridge could not read the Calendly PAT from Key Vault: management calls answer 503 and reconcile cannot run until it can.'
    severity: 1
    window: 'PT5M'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: []
    query: '''
traces
| where message startswith "keyvault outcome=failed"
| parse-kv message as (outcome: string, vault: string, secret: string, error: string) with (regex=@"(\w+)=('[^']*'|\S+)")
| project timestamp, vault, secret, error
'''
  }
]

resource rules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for alert in alerts: {
  name: '${namePrefix}${alert.name}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: alert.displayName
    description: alert.description
    severity: alert.severity
    enabled: true
    scopes: [ appInsights.id ]
    evaluationFrequency: alert.window
    windowSize: alert.window
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: alert.query
          timeAggregation: 'Count'
          operator: alert.operator
          threshold: alert.threshold
          dimensions: alert.dimensions
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: empty(alertEmail) ? [] : [ actionGroup.id ]
    }
  }
}]

output ruleNames array = [for (alert, i) in alerts: rules[i].name]
output actionGroupId string = empty(alertEmail) ? '' : actionGroup.id
