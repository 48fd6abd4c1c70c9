// Evaluates AWS requests against identity policies with @cloud-copilot/iam-simulate (IAM's
// evaluation logic: actions, resources, condition operators incl. ForAllValues:StringLike).
// stdin: {"principal": ARN, "account": id, "policies": [{name, policy}], "requests": [{action,
// resource, context}]}; stdout: one {decision, allowedBy, errors} per request, in order.
import { runSimulation } from '@cloud-copilot/iam-simulate'

const input = JSON.parse(await new Promise((resolve) => {
  let data = ''
  process.stdin.on('data', (chunk) => { data += chunk })
  process.stdin.on('end', () => resolve(data))
}))

const results = []
for (const request of input.requests) {
  const response = await runSimulation({
    identityPolicies: input.policies,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    request: {
      principal: input.principal,
      action: request.action,
      resource: { resource: request.resource, accountId: input.account },
      contextVariables: request.context,
    },
  }, {})
  if (response.resultType === 'error') {
    results.push({ decision: 'Error', allowedBy: [], errors: response.errors })
    continue
  }
  const analysis = response.result?.analysis
  const allowedBy = (analysis?.identityAnalysis?.allowStatements ?? []).map((s) => s.explain?.identifier ?? '?')
  results.push({ decision: response.overallResult, allowedBy, errors: null })
}
process.stdout.write(JSON.stringify(results))
