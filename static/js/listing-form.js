// Milestone rows: add from the template, and show the running total against the price.
(() => {
  const rows = document.getElementById("milestone-rows");
  const totalForms = document.getElementById("id_milestones-TOTAL_FORMS");
  const maxForms = Number(document.getElementById("id_milestones-MAX_NUM_FORMS").value);
  const addButton = document.getElementById("milestone-add");
  const totalLine = document.getElementById("milestone-total");
  const price = document.getElementById("id_price");
  // Exact cents from "12.5" or "12.50"; null when not a plain amount.
  const cents = (value) => {
    const match = /^\s*(\d+)(?:\.(\d{0,2}))?\s*$/.exec(value || "");
    return match ? Number(match[1]) * 100 + Number((match[2] || "").padEnd(2, "0")) : null;
  };
  const dollars = (amount) => `$${Math.floor(amount / 100).toLocaleString("en-US")}.${String(amount % 100).padStart(2, "0")}`;
  const refresh = () => {
    const live = [...rows.querySelectorAll("[data-milestone-row]")].filter((row) => !row.querySelector("[data-milestone-delete]").checked);
    addButton.disabled = Number(totalForms.value) >= maxForms;
    if (!live.length) { totalLine.textContent = ""; return; }
    const sum = live.reduce((acc, row) => acc + (cents(row.querySelector("[data-milestone-amount]").value) || 0), 0);
    const target = cents(price.value);
    const matches = target !== null && sum === target;
    totalLine.className = `small ${matches ? "text-success" : "text-danger"}`;
    totalLine.textContent = target === null
      ? `Milestones add up to ${dollars(sum)}.`
      : `Milestones add up to ${dollars(sum)} of ${dollars(target)}${matches ? " ✓" : ""}.`;
  };
  addButton.addEventListener("click", () => {
    const index = Number(totalForms.value);
    const html = document.getElementById("milestone-template").innerHTML.replaceAll("__prefix__", index);
    rows.insertAdjacentHTML("beforeend", html);
    totalForms.value = index + 1;
    rows.lastElementChild.querySelector("input").focus();
    refresh();
  });
  rows.addEventListener("input", refresh);
  rows.addEventListener("change", refresh);
  price.addEventListener("input", refresh);
  refresh();
})();
