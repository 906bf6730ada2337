-- The :Koma command. Everything else loads on first use; no server starts before setup().
if vim.g.loaded_koma then
  return
end
vim.g.loaded_koma = true
require('koma.commands').create()
