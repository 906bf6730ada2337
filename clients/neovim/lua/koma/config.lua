--- Koma's options: plugin options (how Neovim runs and shows Koma), validated here, and server
--- settings (what `koma lsp` does), passed to the server as written.
---
--- The server is the one validator of its settings (its schema is the one description of them,
--- docs/protocol.md#settings): a key written here that is not a plugin option is sent untouched,
--- snake_case or camelCase, and a wrong one is reported by the server in one line naming the key.
--- Only the settings the user wrote are sent, so `KOMA_*` environment variables and Koma's
--- config files keep working for everything else.

local M = {}

---@class koma.Keymaps
---@field accept string|false Insert mode: accept the ghost text (falls back to the key itself)
---@field next string|false Insert mode: next suggestion
---@field prev string|false Insert mode: previous suggestion
---@field dismiss string|false Insert mode: hide the ghost text
---@field chat_submit string|false Chat buffer, normal mode: send the message under "## You"
---@field chat_submit_insert string|false Chat buffer, insert mode: send the message

---@class koma.ChatWindow
---@field layout "vertical"|"horizontal"|"tab"
---@field size integer? columns (vertical) or lines (horizontal); nil = half

---@class koma.InstallOptions
---@field source string? what :KomaInstall installs (a wheel, a checkout, a requirement); nil = this plugin's checkout, else koma-lsp from the index
---@field python string? the Python (>= 3.11) the virtual environment is made from; nil = python3 on PATH

---@class koma.PluginOptions
---@field cmd (string[]|fun(dispatchers: table): table)? command starting the server; nil = search (see koma.server)
---@field workspace_venv boolean use a koma in the project's .venv/venv/env even when it is not the active VIRTUAL_ENV
---@field install koma.InstallOptions
---@field cmd_env table<string,string>? extra environment for the server
---@field filetypes string[]? file types Koma attaches to; nil = every file
---@field root_markers string[] files marking the project root
---@field auto_start boolean start the server when a file opens
---@field inline_backend "auto"|"native"|"extmark" ghost text renderer
---@field confirm_edits boolean ask before applying an edit the chat proposes
---@field keymaps koma.Keymaps
---@field chat_window koma.ChatWindow

---@type koma.PluginOptions
M.plugin_defaults = {
  cmd = nil,
  workspace_venv = false,
  install = { source = nil, python = nil },
  cmd_env = nil,
  filetypes = nil,
  root_markers = { '.koma.toml', '.git' },
  auto_start = true,
  inline_backend = 'auto',
  confirm_edits = true,
  keymaps = {
    accept = '<Tab>',
    next = '<M-]>',
    prev = '<M-[>',
    dismiss = '<C-]>',
    chat_submit = '<CR>',
    chat_submit_insert = '<C-s>',
  },
  chat_window = { layout = 'vertical', size = nil },
}

local function one_of(values)
  return function(v)
    return vim.tbl_contains(values, v), 'one of ' .. table.concat(values, '|')
  end
end

local list = function(v)
  return vim.islist(v) and vim.iter(v):all(function(x)
    return type(x) == 'string'
  end), 'a list of strings'
end

local plugin_schema = {
  cmd = { 'table', 'function' },
  cmd_env = 'table',
  filetypes = list,
  root_markers = list,
  auto_start = 'boolean',
  inline_backend = one_of({ 'auto', 'native', 'extmark' }),
  confirm_edits = 'boolean',
  workspace_venv = 'boolean',
}

--- `value` for an error message: a few levels and a few hundred characters at most, so a big
--- table never floods :messages.
---@param value any
---@return string
local function show(value)
  local text = vim.inspect(value, { depth = 2, newline = ' ', indent = '' })
  return #text > 120 and (text:sub(1, 117) .. '...') or text
end

local function check(path, value, validator)
  if type(validator) == 'function' then
    local ok, expected = validator(value)
    if not ok then
      error(('%s: expected %s, got %s'):format(path, expected, show(value)), 0)
    end
  else
    local ok, err = pcall(vim.validate, path, value, validator)
    if not ok then
      error((tostring(err):gsub('^[^\n]-:%d+: ', '')), 0)
    end
  end
end

--- Where `s` stops being UTF-8 (nil: it is UTF-8). JSON would carry the bytes, but the server
--- reads a message as UTF-8 and could not even answer a request that holds them.
---@param s string
---@return integer?
local function not_utf8_at(s)
  if not s:find('[\128-\255]') then
    return nil
  end
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1
      or (c >= 0xC2 and c < 0xE0) and 2
      or (c >= 0xE0 and c < 0xF0) and 3
      or (c >= 0xF0 and c < 0xF5) and 4
      or nil
    if not len or i + len - 1 > n then
      return i
    end
    local second = s:byte(i + 1)
    if (c == 0xE0 and second < 0xA0) or (c == 0xED and second > 0x9F)
      or (c == 0xF0 and second < 0x90) or (c == 0xF4 and second > 0x8F) then
      return i -- an overlong form or a surrogate
    end
    for j = i + 1, i + len - 1 do
      local b = s:byte(j)
      if b < 0x80 or b > 0xBF then
        return i
      end
    end
    i = i + len
  end
  return nil
end

-- No setting nests 10 deep; JSON encoding stops at 1000.
local MAX_DEPTH = 100

--- A server setting must survive the trip as JSON (no functions, userdata, NaN or cycles);
--- what it means is the server's to judge. The error names the path to the offending part.
---@param path string
---@param value any
---@param depth integer?
---@param open table<table, true>? the tables being checked around this one
local function check_json(path, value, depth, open)
  depth, open = depth or 1, open or {}
  local kind = type(value)
  local function bad(what)
    error(('%s: expected a value JSON can carry (server setting), got %s'):format(path, what), 0)
  end
  if value == vim.NIL or kind == 'boolean' then
    return
  elseif kind == 'string' then
    local at = not_utf8_at(value)
    if at then
      bad(('a string that is not UTF-8 (byte %d of %d)'):format(at, #value))
    end
  elseif kind == 'number' then
    if value ~= value or value == math.huge or value == -math.huge then
      bad(tostring(value) .. ', not a finite number')
    end
  elseif kind == 'table' then
    if open[value] then
      bad('a table that contains itself')
    elseif depth > MAX_DEPTH then
      bad(('tables nested over %d deep'):format(MAX_DEPTH))
    end
    open[value] = true
    for k, v in pairs(value) do
      if type(k) ~= 'string' and type(k) ~= 'number' then
        bad(('a key of type %s (%s)'):format(type(k), show(k)))
      elseif type(k) == 'string' and not_utf8_at(k) then
        bad('a key that is not UTF-8')
      end
      local inner = type(k) == 'string' and (path .. '.' .. k) or ('%s[%s]'):format(path, k)
      check_json(inner, v, depth + 1, open)
    end
    open[value] = nil
    if depth == 1 then
      local ok, err = pcall(vim.json.encode, value)
      if not ok then
        bad(('%s (%s)'):format(show(value), tostring(err)))
      end
    end
  else
    bad(('a %s (%s)'):format(kind, show(value)))
  end
end

local OPTION_NAMES = vim.list_extend(vim.tbl_keys(plugin_schema), { 'keymaps', 'chat_window', 'install' })

--- The plugin option `key` resembles, if any: the same after dropping case, `-` and `_`, or a
--- letter or two away. Such a key is a typo of the option, not a server setting to send on.
---@param key string
---@return string?
local function near_option(key)
  local function norm(s)
    return (s:lower():gsub('[-_]', ''))
  end
  local function distance(a, b)
    if math.abs(#a - #b) > 2 then
      return 3
    end
    local prev = {}
    for j = 0, #b do
      prev[j] = j
    end
    for i = 1, #a do
      local cur = { [0] = i }
      for j = 1, #b do
        local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
        cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      end
      prev = cur
    end
    return prev[#b]
  end
  for _, name in ipairs(OPTION_NAMES) do
    local allowed = #name >= 6 and 2 or 1
    if norm(key) == norm(name) or distance(key, name) <= allowed then
      return name
    end
  end
  return nil
end

---@class koma.ResolvedConfig
---@field plugin koma.PluginOptions
---@field server table the server settings the user set, as written (the `koma` section)

--- Validate the plugin options in `opts` and split off the server settings (every other key).
--- Raises a readable error naming the offending plugin option.
---@param opts table?
---@return koma.ResolvedConfig
function M.resolve(opts)
  opts = opts or {}
  if type(opts) ~= 'table' then
    error('setup() expects a table', 0)
  end
  local plugin = vim.deepcopy(M.plugin_defaults)
  local server = {}
  for key, value in pairs(opts) do
    if type(key) ~= 'string' then
      error(('setup() options are named (key = value); got [%s] = %s'):format(key, show(value)), 0)
    elseif not_utf8_at(key) then
      error('setup(): an option name that is not UTF-8', 0)
    end
    if key == 'keymaps' then
      check('keymaps', value, 'table')
      for name, lhs in pairs(value) do
        if plugin.keymaps[name] == nil then
          error(('unknown option "keymaps.%s"'):format(name), 0)
        end
        check('keymaps.' .. name, lhs, function(v)
          return v == false or type(v) == 'string', 'a key string or false'
        end)
        plugin.keymaps[name] = lhs
      end
    elseif key == 'chat_window' then
      check('chat_window', value, 'table')
      for name, v in pairs(value) do
        if name == 'layout' then
          check('chat_window.layout', v, one_of({ 'vertical', 'horizontal', 'tab' }))
        elseif name == 'size' then
          check('chat_window.size', v, 'number')
        else
          error(('unknown option "chat_window.%s"'):format(name), 0)
        end
        plugin.chat_window[name] = v
      end
    elseif key == 'install' then
      check('install', value, 'table')
      for name, v in pairs(value) do
        if name ~= 'source' and name ~= 'python' then
          error(('unknown option "install.%s"'):format(name), 0)
        end
        check('install.' .. name, v, 'string')
        plugin.install[name] = v
      end
    elseif plugin_schema[key] then
      check(key, value, plugin_schema[key])
      plugin[key] = value
    elseif near_option(key) then
      local hint = '(did you mean the plugin option "%s"? Other keys are server settings)'
      error(('unknown option "%s" %s'):format(key, hint:format(near_option(key))), 0)
    else
      check_json(key, value)
      server[key] = vim.deepcopy(value)
    end
  end
  return { plugin = plugin, server = next(server) and server or vim.empty_dict() }
end

return M
