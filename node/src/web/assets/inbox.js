// kairan web inbox: new advisories appear without reload. The page listens to the server's
// event stream (/events); when the inbox version changes it fetches the list's HTML fragment
// from this same server (rendered and escaped there) and swaps it in, marking new rows. On an
// advisory's page it only offers a reload. No other script, nothing from elsewhere.
(function () {
  'use strict';
  var live = document.getElementById('live');
  var list = document.getElementById('inbox');
  var changed = document.getElementById('changed');
  var printButton = document.getElementById('print-button');
  if (printButton) {
    printButton.addEventListener('click', function () { window.print(); });
  }
  if (!live || !window.EventSource) {
    return;
  }
  var version = live.getAttribute('data-version');
  var loading = false;

  function digests() {
    var seen = {};
    var rows = list ? list.querySelectorAll('li.row') : [];
    for (var i = 0; i < rows.length; i++) {
      seen[rows[i].getAttribute('data-digest')] = true;
    }
    return seen;
  }

  function refresh(wanted) {
    if (loading) { return; }
    loading = true;
    var before = digests();
    fetch('/fragment/list', { cache: 'no-store', credentials: 'same-origin' })
      .then(function (response) {
        if (!response.ok) { throw new Error('HTTP ' + response.status); }
        var got = response.headers.get('X-Inbox-Version') || wanted;
        return response.text().then(function (html) { return [got, html]; });
      })
      .then(function (result) {
        list.innerHTML = result[1];
        version = result[0];
        live.setAttribute('data-version', version);
        var rows = list.querySelectorAll('li.row');
        for (var i = 0; i < rows.length; i++) {
          if (!before[rows[i].getAttribute('data-digest')]) { rows[i].classList.add('fresh'); }
        }
        document.title = 'kairan 受信箱 (' + rows.length + ')';
      })
      .catch(function () { live.classList.add('offline'); })
      .then(function () { loading = false; });
  }

  var source = new EventSource('/events');
  source.addEventListener('open', function () { live.classList.remove('offline'); });
  source.addEventListener('error', function () { live.classList.add('offline'); });
  source.addEventListener('inbox', function (event) {
    var data;
    try { data = JSON.parse(event.data); } catch (e) { return; }
    if (!data || data.version === version) { return; }
    if (list) {
      refresh(data.version);
    } else if (changed) {
      changed.hidden = false;
    }
  });
}());
