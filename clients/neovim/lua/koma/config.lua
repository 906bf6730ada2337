--- Koma's options: plugin options (how Neovim runs and shows Koma) and server settings (what
--- `koma lsp` does, see docs/protocol.md).
---
--- Server settings are written in snake_case here and sent in the camelCase of the protocol.
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

local effort = one_of({ 'low', 'medium', 'high' })
local list = function(v)
  return vim.islist(v) and vim.iter(v):all(function(x)
    return type(x) == 'string'
  end), 'a list of strings'
end
local null_or = function(t)
  return function(v)
    return v == vim.NIL or type(v) == t, t .. ' or vim.NIL'
  end
end

--- Server settings: snake_case key → { camelCase key, validator or nested schema }.
--- A validator is a type name or a function returning ok, expected.
local server_schema = {
  provider = { 'provider', one_of({ 'auto', 'ollama', 'lmstudio', 'openai', 'embedded' }) },
  base_url = { 'baseUrl', 'string' },
  model = { 'model', 'string' },
  completion_model = { 'completionModel', 'string' },
  reasoning_effort = {
    'reasoningEffort',
    { completion = { 'completion', effort }, actions = { 'actions', effort }, chat = { 'chat', effort } },
  },
  completion = {
    'completion',
    {
      -- `completion.model` is a Lua convenience for the top-level `completionModel`.
      model = { '@completionModel', 'string' },
      enabled = { 'enabled', 'boolean' },
      debounce_ms = { 'debounceMs', null_or('number') },
      max_tokens = { 'maxTokens', 'number' },
      prefix_tokens = { 'prefixTokens', 'number' },
      suffix_tokens = { 'suffixTokens', 'number' },
      multiline = { 'multiline', one_of({ 'auto', 'always', 'never' }) },
      temperature = { 'temperature', 'number' },
      open_documents_context = { 'openDocumentsContext', 'boolean' },
      cache_size = { 'cacheSize', 'number' },
      route = { 'route', one_of({ 'auto', 'fim', 'raw', 'chat' }) },
      speculative = { 'speculative', 'boolean' },
    },
  },
  chat = {
    'chat',
    {
      max_tokens = { 'maxTokens', null_or('number') },
      system_prompt = { 'systemPrompt', null_or('string') },
      temperature = { 'temperature', null_or('number') },
    },
  },
  tools = {
    'tools',
    {
      -- Tool names are server identifiers: copied verbatim, never camel-cased.
      policies = {
        'policies',
        function(v)
          if type(v) ~= 'table' then
            return false, 'a table of tool = "allow"|"ask"|"deny"'
          end
          for k, p in pairs(v) do
            if type(k) ~= 'string' or not vim.tbl_contains({ 'allow', 'ask', 'deny' }, p) then
              return false, 'a table of tool = "allow"|"ask"|"deny"'
            end
          end
          return true
        end,
      },
      run_tests_command = { 'runTestsCommand', list },
      run_tests_timeout_seconds = { 'runTestsTimeoutSeconds', 'number' },
      max_steps = { 'maxSteps', 'number' },
      max_read_bytes = { 'maxReadBytes', 'number' },
      secret_patterns = { 'secretPatterns', list },
      pass_env = { 'passEnv', list },
    },
  },
  cache = {
    'cache',
    {
      mode = { 'mode', one_of({ 'off', 'deterministic', 'always' }) },
      persistent = { 'persistent', 'boolean' },
      max_entries = { 'maxEntries', 'number' },
    },
  },
  memory = {
    'memory',
    {
      max_memory_gb = { 'maxMemoryGb', null_or('number') },
      auto_unload_minutes = { 'autoUnloadMinutes', null_or('number') },
    },
  },
  gpu = {
    'gpu',
    {
      num_gpu = { 'numGpu', null_or('number') },
      num_thread = { 'numThread', null_or('number') },
      main_gpu = { 'mainGpu', null_or('number') },
      use_mmap = { 'useMmap', null_or('boolean') },
    },
  },
  keep_alive = {
    'keepAlive',
    function(v)
      return type(v) == 'string' or type(v) == 'number', 'a duration string or seconds'
    end,
  },
  num_ctx = { 'numCtx', null_or('number') },
  preload_on_open = { 'preloadOnOpen', 'boolean' },
}
M.server_schema = server_schema

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

--- Translate user server settings into the protocol's camelCase table.
---@param user table
---@param schema table
---@param prefix string
---@param out table camelCase result for this level
---@param root table camelCase result at the top level (for keys hoisted with '@')
local function translate(user, schema, prefix, out, root)
  for key, value in pairs(user) do
    local path = prefix .. key
    local entry = schema[key]
    if not entry then
      error(('unknown option %q'):format(path), 0)
    end
    local camel, rule = entry[1], entry[2]
    local target = out
    if camel:sub(1, 1) == '@' then
      camel, target = camel:sub(2), root
    end
    if type(rule) == 'table' and not vim.islist(rule) then
      check(path, value, 'table')
      target[camel] = target[camel] or {}
      translate(value, rule, path .. '.', target[camel], root)
      if next(target[camel]) == nil then
        -- e.g. `completion = { model = ... }` only sets the top-level completionModel.
        target[camel] = nil
      end
    else
      check(path, value, rule)
      if camel == 'policies' and next(value) == nil then
        -- An empty Lua table would be encoded as a JSON array; policies is an object.
        value = vim.empty_dict()
      end
      target[camel] = value
    end
  end
end

---@class koma.ResolvedConfig
---@field plugin koma.PluginOptions
---@field server table camelCase settings the user set (the `koma` section)

--- Validate `opts` and split it into plugin options and server settings.
--- Raises a readable error naming the offending key.
---@param opts table?
---@return koma.ResolvedConfig
function M.resolve(opts)
  opts = opts or {}
  if type(opts) ~= 'table' then
    error('setup() expects a table', 0)
  end
  local plugin = vim.deepcopy(M.plugin_defaults)
  local user_server = {}
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
    elseif server_schema[key] then
      user_server[key] = value
    else
      error(('unknown option %q'):format(key), 0)
    end
  end
  local server = {}
  translate(user_server, server_schema, '', server, server)
  return { plugin = plugin, server = next(server) and server or vim.empty_dict() }
end

return M
