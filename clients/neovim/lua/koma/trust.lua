--- The question the server asks with `koma/untrustedConfig` (docs/protocol.md): the project's
--- `.koma.toml` sets keys that choose where code goes or what runs, and the server ignores them
--- until the user trusts that exact file. Asked with `vim.ui.select`: Trust (the server re-hashes
--- the file and trusts it only if it still has the content shown), Keep ignoring (not asked
--- again about this content: remembered in Neovim's state directory), Show file (opens it
--- read-only, then asks again).

local M = {}

M.TRUST = 'Trust'
M.KEEP_IGNORING = 'Keep ignoring'
M.SHOW_FILE = 'Show file'

--- "path\nsha256" of the files the user chose to keep ignoring (loaded from `M.store_path()`).
---@type table<string, true>?
M.ignored = nil
local MAX_REMEMBERED = 64
--- Questions on screen, so a repeated notification does not stack a second picker.
---@type table<string, true>
local asking = {}

local function notify(msg, level)
  vim.notify('Koma: ' .. msg, level or vim.log.levels.INFO)
end

--- The params if they have the protocol's shape (keys reduced to plain names), else nil.
---@param params any
---@return {path: string, uri: string, sha256: string, keys: string[], message: string}?
function M.parse(params)
  if type(params) ~= 'table' then
    return nil
  end
  local path, sha = params.path, params.sha256
  if type(path) ~= 'string' or path == '' or type(sha) ~= 'string' or not sha:match('^%x+$') or #sha ~= 64 then
    return nil
  end
  if type(params.keys) ~= 'table' then
    return nil
  end
  -- The key names come from the repository's file: show only plain names.
  local keys = {}
  for _, key in ipairs(params.keys) do
    if type(key) == 'string' and #key <= 80 and key:match('^[%w_.]+$') then
      keys[#keys + 1] = key
    end
  end
  if #keys == 0 then
    return nil
  end
  return {
    path = path,
    uri = type(params.uri) == 'string' and params.uri or vim.uri_from_fname(path),
    sha256 = sha,
    keys = keys,
    message = type(params.message) == 'string' and params.message or '',
  }
end

--- Where Keep ignoring answers are kept across sessions.
function M.store_path()
  return vim.fs.joinpath(vim.fn.stdpath('state'), 'koma', 'ignored-configs.json')
end

local function load_ignored()
  if M.ignored then
    return M.ignored
  end
  M.ignored = {}
  local file = io.open(M.store_path(), 'r')
  if file then
    local ok, list = pcall(vim.json.decode, file:read('*a') or '')
    file:close()
    if ok and type(list) == 'table' then
      for _, id in ipairs(list) do
        if type(id) == 'string' then
          M.ignored[id] = true
        end
      end
    end
  end
  return M.ignored
end

local function remember(id)
  local ignored = load_ignored()
  ignored[id] = true
  local list = vim.tbl_keys(ignored)
  table.sort(list)
  while #list > MAX_REMEMBERED do
    table.remove(list, 1)
  end
  local path = M.store_path()
  vim.fn.mkdir(vim.fs.dirname(path), 'p')
  local file = io.open(path, 'w')
  if file then
    file:write(vim.json.encode(list))
    file:close()
  end
end

local function short(path)
  return vim.fn.fnamemodify(path, ':~:.')
end

---@param client vim.lsp.Client
local function trust(client, config)
  client:request('workspace/executeCommand', {
    command = 'koma.trustConfig',
    arguments = { { path = config.path, sha256 = config.sha256 } },
  }, function(err, result)
    if err then
      notify('could not trust ' .. short(config.path) .. ': ' .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
    elseif type(result) == 'table' and result.trusted == true then
      local keys = type(result.keys) == 'table' and table.concat(vim.tbl_map(tostring, result.keys), ', ')
        or table.concat(config.keys, ', ')
      notify(('trusted %s; now applying %s'):format(short(config.path), keys))
    else
      local why = type(result) == 'table' and type(result.message) == 'string' and result.message
        or 'the server did not trust it'
      notify(short(config.path) .. ' was not trusted: ' .. why, vim.log.levels.WARN)
    end
  end)
end

local function ask(client, config, id)
  local prompt = ('Koma: %s sets %s, which choose where your code is sent or what runs; '
    .. 'they are ignored until you trust this file'):format(short(config.path), table.concat(config.keys, ', '))
  vim.ui.select({ M.TRUST, M.KEEP_IGNORING, M.SHOW_FILE }, { prompt = prompt, kind = 'koma.trust' }, function(choice)
    if choice == M.SHOW_FILE then
      pcall(vim.cmd, 'sview ' .. vim.fn.fnameescape(config.path))
      vim.schedule(function()
        ask(client, config, id)
      end)
      return
    end
    asking[id] = nil
    if choice == M.KEEP_IGNORING then
      remember(id)
      notify(('keeping %s of %s ignored'):format(table.concat(config.keys, ', '), short(config.path)))
    elseif choice == M.TRUST then
      trust(client, config)
    end
  end)
end

--- Handler of the `koma/untrustedConfig` notification.
---@param params any
---@param ctx lsp.HandlerContext
function M.on_untrusted(params, ctx)
  local config = M.parse(params)
  local client = ctx and vim.lsp.get_client_by_id(ctx.client_id)
  if not config or not client then
    return
  end
  local id = config.path .. '\n' .. config.sha256
  if load_ignored()[id] or asking[id] then
    return
  end
  asking[id] = true
  -- A picker may need the UI loop: never open it from inside the RPC callback.
  vim.schedule(function()
    ask(client, config, id)
  end)
end

return M
