-- Argo CD health for ml-connector.com/SyncRun: Succeeded -> Healthy, Failed -> Degraded,
-- Pending / WaitingForLock / Running (or no status yet) -> Progressing.
local hs = { status = "Progressing", message = "Waiting for the operator to start the run" }
if obj.status == nil or obj.status.phase == nil then
  return hs
end
local phase = obj.status.phase
local message = obj.status.message
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = message or "Run succeeded"
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = message or "Run failed"
elseif phase == "WaitingForLock" then
  hs.message = message or "Waiting for the Anaplan model lock"
elseif phase == "Running" then
  hs.message = message or "Run in progress"
else
  hs.message = message or ("Phase " .. tostring(phase))
end
return hs
