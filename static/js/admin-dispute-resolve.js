// The resolve page's live preview: what each side receives net of the contract's fees, as the
// amounts are typed. The server's "Preview payouts" shows the same; this only saves a round trip.
// Money in integer stroops (10^-7 USD); fees rounded down per payout, as the contract does.
(function () {
  "use strict";
  var STROOPS_PER_CENT = 100000;
  var form = document.querySelector("form.offerhub-resolve");
  if (!form) return;
  var out = form.querySelector(".offerhub-live-preview");
  var held = parseInt(form.dataset.held, 10);
  var bps = parseInt(form.dataset.twBps, 10);
  var platformHundredths = percentHundredths(form.dataset.platformPercent || "0");

  function percentHundredths(text) {
    var parts = String(text).split(".");
    var cents = ((parts[1] || "") + "00").slice(0, 2);
    return parseInt(parts[0] || "0", 10) * 100 + parseInt(cents, 10);
  }

  function stroops(input) {
    if (!input) return null;
    var text = input.value.trim();
    if (!/^[0-9]+(\.[0-9]{0,2})?$|^\.[0-9]{1,2}$/.test(text)) return null;
    var parts = text.split(".");
    var cents = ((parts[1] || "") + "00").slice(0, 2);
    return (parseInt(parts[0] || "0", 10) * 100 + parseInt(cents, 10)) * STROOPS_PER_CENT;
  }

  function net(amount) {
    if (amount <= 0) return 0;
    return amount - Math.floor((amount * bps) / 10000) - Math.floor((amount * platformHundredths) / 10000);
  }

  function dollars(amount) {
    var cents = Math.floor(amount / STROOPS_PER_CENT);
    return "$" + Math.floor(cents / 100) + "." + String(cents % 100).padStart(2, "0");
  }

  function shares(decision, milestones) {
    // [[milestone amount, to the seller], ...] or a string saying what is missing.
    var amounts = milestones.length ? milestones.map(function (m) { return m.amount; }) : [held];
    if (decision === "FULL_RELEASE") return amounts.map(function (a) { return [a, a]; });
    if (decision === "FULL_REFUND") return amounts.map(function (a) { return [a, 0]; });
    var typed = milestones.map(function (m) { return stroops(m.input); });
    if (typed.length && typed.every(function (t) { return t !== null; })) {
      return milestones.map(function (m, i) { return [m.amount, Math.min(typed[i], m.amount)]; });
    }
    var release = stroops(form.elements.release_amount);
    var refund = stroops(form.elements.refund_amount);
    if (release === null || refund === null) return "Type the amount to each side to see the payouts.";
    if (release + refund !== held) return "The two amounts must add up to " + dollars(held) + ".";
    var left = release;
    return amounts.map(function (a) { var s = Math.min(left, a); left -= s; return [a, s]; });
  }

  function update() {
    var decision = form.elements.decision ? form.elements.decision.value : "";
    var milestones = Array.prototype.map.call(form.querySelectorAll("input[data-milestone-amount]"), function (input) {
      return { input: input, amount: parseInt(input.dataset.milestoneAmount, 10) };
    });
    var plan = decision ? shares(decision, milestones) : "Choose a decision.";
    if (typeof plan === "string") {
      out.textContent = plan;
    } else {
      var seller = 0, buyer = 0, sellerGross = 0, buyerGross = 0;
      plan.forEach(function (pair) {
        sellerGross += pair[1]; buyerGross += pair[0] - pair[1];
        seller += net(pair[1]); buyer += net(pair[0] - pair[1]);
      });
      out.textContent = "The seller receives " + dollars(seller) + " (of " + dollars(sellerGross) +
        ") and the buyer " + dollars(buyer) + " (of " + dollars(buyerGross) + "), net of fees.";
    }
    out.hidden = false;
  }

  form.addEventListener("input", update);
  form.addEventListener("change", update);
  update();
})();
