"""Guarded writes: several Redis writes applied together, and only while some conditions still hold.

MULTI/EXEC writes together but cannot look first; WATCH looks first but fails whenever anything touched a
watched key (a busy job hash changes every few milliseconds). A guarded write is one Lua script that checks each
condition and then applies every write, or applies none and says which condition failed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis

from worker.errors import BoxcutError

# ARGV[1]: {"if": [[kind, key, name, expected], ...], "do": [[command, arg, ...], ...]}
#   kinds: "hget" (a hash field equals expected), "zscore" (a sorted-set member's score equals expected, as a
#   number), "zmember" (the member is in the sorted set; expected is ignored), "absent" (the key does not exist;
#   name and expected are ignored)
#   an XADD whose id is "$prev" takes the id of the XADD before it in the plan (the same entry in two streams)
# Returns {0, i} when condition i (from 1) fails and nothing was written, else {1, result of each write}.
_APPLY = """
local plan = cjson.decode(ARGV[1])
for i, cond in ipairs(plan['if']) do
  local kind, key, name, expected = cond[1], cond[2], cond[3], cond[4]
  local ok
  if kind == 'hget' then
    ok = redis.call('HGET', key, name) == expected
  elseif kind == 'zscore' then
    local score = redis.call('ZSCORE', key, name)
    ok = score and tonumber(score) == tonumber(expected)
  elseif kind == 'zmember' then
    ok = redis.call('ZSCORE', key, name) ~= false
  elseif kind == 'absent' then
    ok = redis.call('EXISTS', key) == 0
  end
  if not ok then return {0, i} end
end
local results = {1}
local last_id = nil
for _, op in ipairs(plan['do']) do
  local result
  if op[1] == 'XADD' and op[3] == '$prev' and last_id then
    -- the same entry in a second stream under the first stream's id (a job's own audit stream repeats the main
    -- one's entries, id for id); '*' when that id cannot go there (an entry written before ids were shared)
    op[3] = last_id
    local ok, added = pcall(redis.call, unpack(op))
    if not ok then op[3] = '*'; added = redis.call(unpack(op)) end
    result = added
  else
    if op[1] == 'XADD' and op[3] == '$prev' then op[3] = '*' end
    result = redis.call(unpack(op))
  end
  if op[1] == 'XADD' then last_id = result end
  if type(result) == 'table' then result = 1 end
  results[#results + 1] = result
end
return results
"""


_SCRIPTS: dict[int, Any] = {}


def _script(client: redis.Redis) -> Any:
    script = _SCRIPTS.get(id(client))
    if script is None or script.registered_client is not client:
        script = _SCRIPTS[id(client)] = client.register_script(_APPLY)
    return script


class GuardFailed(BoxcutError):
    """A condition of a guarded write no longer held; nothing was written."""

    def __init__(self, index: int, condition: list[str]) -> None:
        super().__init__(f"condition {index} failed: {condition}")
        self.index = index
        self.condition = condition


@dataclass
class GuardedWrite:
    """Conditions and writes, applied by `apply` in one step."""

    conditions: list[list[str]] = field(default_factory=list)
    writes: list[list[str]] = field(default_factory=list)

    def hash_field_is(self, key: str, name: str, expected: str) -> GuardedWrite:
        self.conditions.append(["hget", key, name, expected])
        return self

    def score_is(self, key: str, member: str, expected: int) -> GuardedWrite:
        self.conditions.append(["zscore", key, member, str(expected)])
        return self

    def is_member(self, key: str, member: str) -> GuardedWrite:
        self.conditions.append(["zmember", key, member, ""])
        return self

    def is_absent(self, key: str) -> GuardedWrite:
        self.conditions.append(["absent", key, "", ""])
        return self

    def write(self, command: str, *args: Any) -> int:
        """Add a write; returns its position in `apply`'s results."""
        self.writes.append([command, *(str(a) for a in args)])
        return len(self.writes) - 1

    def apply(self, client: redis.Redis) -> list[Any]:
        """Check every condition and apply every write, or raise `GuardFailed` having written nothing."""
        return self.outcome(_script(client)(args=[self._plan()]))

    def stage(self, client: redis.Redis, pipe: redis.client.Pipeline) -> None:
        """Queue the step on `pipe` (a pipeline of `client`), for a caller that sends more on the same connection
        (a WAIT for replicas); `outcome` reads the step's reply from the pipeline's results."""
        _script(client)(args=[self._plan()], client=pipe)

    def outcome(self, reply: Any) -> list[Any]:
        """The result of each write, from the step's reply; `GuardFailed` when a condition failed (nothing was
        written)."""
        result = list(reply)
        if int(result[0]) == 0:
            index = int(result[1])
            raise GuardFailed(index, self.conditions[index - 1])
        return result[1:]

    def _plan(self) -> str:
        return json.dumps({"if": self.conditions, "do": self.writes}, separators=(",", ":"))
