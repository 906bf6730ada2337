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

local function check(path, value, validator)
  if type(validator) == 'function' then
    local ok, expected = validator(value)
    if not ok then
      error(('%s: expected %s, got %s'):format(path, expected, vim.inspect(value)), 0)
    end
  else
    vim.validate(path, value, validator)
  end
end

--- A server setting must survive the trip as JSON (no functions, userdata or cycles); what it
--- means is the server's to judge.
---@param key string
---@param value any
local function check_json(key, value)
  local ok = pcall(vim.json.encode, value)
  if not ok then
    local message = '%s: expected a value JSON can carry (server setting), got %s'
    error(message:format(key, vim.inspect(value)), 0)
  end
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
    else
      check_json(key, value)
      server[key] = vim.deepcopy(value)
    end
  end
  return { plugin = plugin, server = next(server) and server or vim.empty_dict() }
end

return M
