--- AI edits: `:'<,'>Koma refactor|docstring|tests|fix|explain`, and the server requests that
--- ask the user something (tool confirmations, edits the chat proposes).
---
--- The commands use the same `textDocument/codeAction` + `codeAction/resolve` pair as
--- `vim.lsp.buf.code_action()`: listing is instant, resolving runs the model, and the server
--- remembers the reasoning so `K` on the changed lines shows it.

local M = {}

local api = vim.api

--- Names accepted by `:Koma <name>` and the `data.action` each maps to.
M.names = { 'explain', 'refactor', 'docstring', 'tests', 'fix' }

---@type {client: vim.lsp.Client, id: integer, name: string}?
M.pending = nil

--- LSP range covering whole lines `line1`..`line2` (1-based, inclusive).
---@return lsp.Range
function M.lsp_range(bufnr, line1, line2, encoding)
  local last = api.nvim_buf_get_lines(bufnr, line2 - 1, line2, false)[1] or ''
  return {
    start = { line = line1 - 1, character = 0 },
    ['end'] = { line = line2 - 1, character = vim.str_utfindex(last, encoding or 'utf-16') },
  }
end

local function diagnostics_in(bufnr, line1, line2)
  local out = {}
  for _, d in ipairs(vim.diagnostic.get(bufnr)) do
    if d.lnum >= line1 - 1 and d.lnum <= line2 - 1 then
      local lsp = d.user_data and d.user_data.lsp
      out[#out + 1] = lsp
        or {
          range = {
            start = { line = d.lnum, character = d.col },
            ['end'] = { line = d.end_lnum or d.lnum, character = d.end_col or d.col },
          },
          message = d.message,
          severity = d.severity,
          source = d.source,
        }
    end
  end
  return out
end

local function apply_resolved(client, bufnr, name, action)
  if action.edit then
    local ok, err = pcall(vim.lsp.util.apply_workspace_edit, action.edit, client.offset_encoding)
    if ok then
      vim.notify(('Koma: %s applied — K on the change shows the reasoning'):format(name))
    else
      vim.notify('Koma: could not apply the edit: ' .. tostring(err), vim.log.levels.ERROR)
    end
  end
  if action.command then
    local command = type(action.command) == 'table' and action.command or action
    client:exec_cmd(command, { bufnr = bufnr })
  end
  if not action.edit and not action.command then
    vim.notify(('Koma: %s produced no change'):format(name), vim.log.levels.WARN)
  end
end

local function resolve(client, bufnr, name, action)
  vim.notify(('Koma: %s… (:Koma cancel stops it)'):format(action.title or name))
  local ok, id = client:request('codeAction/resolve', action, function(err, result)
    if M.pending and M.pending.id == id then
      M.pending = nil
    end
    if err then
      vim.notify(('Koma: %s failed: %s'):format(name, err.message or ''), vim.log.levels.ERROR)
      return
    end
    apply_resolved(client, bufnr, name, result or action)
  end, bufnr)
  if ok then
    M.pending = { client = client, id = id, name = name }
  end
end

--- Run Koma's code action `name` on lines `line1`..`line2` of the current buffer.
---@param name string one of M.names
---@param line1 integer
---@param line2 integer
function M.run(name, line1, line2)
  local bufnr = api.nvim_get_current_buf()
  local client = vim.lsp.get_clients({ name = 'koma', bufnr = bufnr })[1]
  if not client then
    vim.notify('Koma: not attached to this buffer; see :checkhealth koma', vim.log.levels.ERROR)
    return
  end
  local range = M.lsp_range(bufnr, line1, line2, client.offset_encoding)
  if name == 'explain' then
    require('koma.chat').explain(vim.uri_from_bufnr(bufnr), range)
    return
  end
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    range = range,
    context = { diagnostics = diagnostics_in(bufnr, line1, line2), triggerKind = 1 },
  }
  client:request('textDocument/codeAction', params, function(err, actions)
    if err then
      vim.notify('Koma: ' .. (err.message or 'code actions failed'), vim.log.levels.ERROR)
      return
    end
    local matches = vim.tbl_filter(function(a)
      return type(a.data) == 'table' and a.data.action == name
    end, actions or {})
    if #matches == 0 then
      local why = name == 'fix' and 'no diagnostic on these lines' or 'not offered here'
      vim.notify(('Koma: %s — %s'):format(name, why), vim.log.levels.WARN)
    elseif #matches == 1 then
      resolve(client, bufnr, name, matches[1])
    else
      vim.ui.select(matches, {
        prompt = 'Koma: which one?',
        format_item = function(a)
          return a.title
        end,
      }, function(choice)
        if choice then
          resolve(client, bufnr, name, choice)
        end
      end)
    end
  end, bufnr)
end

--- Cancel a running `:Koma <action>`. Returns true when one was running.
---@return boolean
function M.cancel()
  local p = M.pending
  if not p then
    return false
  end
  p.client:cancel_request(p.id)
  M.pending = nil
  vim.notify(('Koma: %s cancelled'):format(p.name))
  return true
end

--- Ask with vim.ui.select from inside a server-request coroutine.
local function ask(items, opts)
  local co, is_main = coroutine.running()
  if not co or is_main then
    return nil
  end
  vim.ui.select(items, opts, function(choice)
    vim.schedule(function()
      coroutine.resume(co, choice)
    end)
  end)
  return coroutine.yield()
end

--- `window/showMessageRequest`: tool confirmations (Allow / Allow for this chat / Deny).
--- No answer counts as Deny on the server side.
function M.confirm(err, params, ctx)
  if type(params) ~= 'table' or not params.actions or #params.actions == 0 then
    return vim.lsp.handlers['window/showMessageRequest'](err, params, ctx)
  end
  local choice = ask(params.actions, {
    prompt = 'Koma: ' .. tostring(params.message),
    kind = 'koma_confirm',
    format_item = function(a)
      return a.title
    end,
  })
  require('koma.chat').log(
    ('❓ %s → **%s**'):format(tostring(params.message), choice and choice.title or 'no answer')
  )
  return choice or vim.NIL
end

--- One line per file: "a.py: lines 3–9".
local function describe(edit)
  local files = {}
  local function add(uri, edits)
    local first, last = math.huge, 0
    for _, e in ipairs(edits or {}) do
      if e.range then
        first = math.min(first, e.range.start.line + 1)
        last = math.max(last, e.range['end'].line + 1)
      end
    end
    local name = vim.fn.fnamemodify(vim.uri_to_fname(uri), ':~:.')
    files[#files + 1] = first == math.huge and name
      or ('%s: lines %d–%d'):format(name, first, last)
  end
  for uri, edits in pairs(edit.changes or {}) do
    add(uri, edits)
  end
  for _, change in ipairs(edit.documentChanges or {}) do
    if change.textDocument then
      add(change.textDocument.uri, change.edits)
    elseif change.uri then
      add(change.uri, {})
    end
  end
  return table.concat(files, ', ')
end

--- `workspace/applyEdit`: edits proposed by the chat. Shown, then applied only if accepted.
function M.apply_edit(_, params, ctx)
  local client = vim.lsp.get_client_by_id(ctx.client_id)
  if type(params) ~= 'table' or type(params.edit) ~= 'table' or not client then
    return { applied = false, failureReason = 'invalid workspace/applyEdit request' }
  end
  local what = describe(params.edit)
  local label = params.label or 'Koma edit'
  local cfg = require('koma').config
  if not cfg or cfg.plugin.confirm_edits then
    local choice = ask({ 'Apply', 'Reject' }, {
      prompt = ('Koma: %s (%s)'):format(label, what),
      kind = 'koma_edit',
    })
    if choice ~= 'Apply' then
      require('koma.chat').log(('✗ Rejected edit: %s — %s'):format(label, what))
      return { applied = false, failureReason = 'rejected by the user' }
    end
  end
  local ok, err = pcall(vim.lsp.util.apply_workspace_edit, params.edit, client.offset_encoding)
  require('koma.chat').log(
    ok and ('✎ Applied edit: %s — %s'):format(label, what)
      or ('✗ Edit failed: %s — %s'):format(label, tostring(err))
  )
  return { applied = ok, failureReason = not ok and tostring(err) or nil }
end

return M
