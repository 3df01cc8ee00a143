// Copy buttons: put the full value (contract id, hash, address) on the clipboard.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const icon = button.querySelector("i");
  try {
    await navigator.clipboard.writeText(button.dataset.copy);
    icon.className = "bi bi-clipboard-check";
  } catch {
    icon.className = "bi bi-clipboard-x";
  }
  setTimeout(() => { icon.className = "bi bi-clipboard"; }, 1500);
});
