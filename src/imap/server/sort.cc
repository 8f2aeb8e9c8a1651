// SORT, UID SORT, THREAD and UID THREAD (RFC 5256), with the ESORT return
// options (RFC 5267 3.1), the DISPLAYFROM and DISPLAYTO keys (RFC 5957)
// and MODSEQ in the SORT response (RFC 7162 3.1.5). The search criteria
// are SEARCH's (Session::Impl::Matches); the keys are read from each
// matching message's header (only the header is loaded unless a search
// key already needed the whole message).
#include <algorithm>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "imap/protocol/fetch_render.h"
#include "imap/protocol/mime_search.h"
#include "imap/protocol/quote.h"
#include "imap/server/message.h"
#include "imap/server/session_impl.h"
#include "smtp/protocol/rfc5322.h"

namespace tern::imap {

namespace {

// i;ascii-casemap (RFC 4790 9.2), the collation RFC 5256 3 compares
// strings with: a-z compare as A-Z, every other octet as itself.
std::string CaseMap(std::string s) {
  for (char& c : s) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return s;
}

bool CharsetAccepted(std::string_view charset) {
  // RFC 5256 3: the server MUST support US-ASCII and UTF-8.
  std::string c = CaseMap(std::string(charset));
  return c == "UTF-8" || c == "US-ASCII";
}

// RFC 5957 3 display key of an address-list field: the decoded display
// name of the first address when there is one, else its addr-spec.
std::string DisplayKey(std::string_view value) {
  for (const EnvelopeAddress& a : ParseEnvelopeAddresses(value)) {
    if (!a.host || !a.mailbox) continue;  // group start or end
    if (a.name) {
      std::string name = smtp::DecodeEncodedWords(*a.name);
      if (!name.empty()) return name;
    }
    return *a.mailbox + "@" + *a.host;
  }
  return {};
}

// The msg-id tokens of a Message-ID, References or In-Reply-To value
// (RFC 5322 3.6.4), in order and without their angle brackets; comments
// and quoted strings (In-Reply-To may carry a phrase) are skipped, and
// whitespace inside the brackets (folded long ids) is dropped.
std::vector<std::string> MessageIds(std::string_view v) {
  std::vector<std::string> out;
  size_t i = 0;
  int depth = 0;
  while (i < v.size()) {
    char c = v[i];
    if (depth > 0) {
      if (c == '\\') {
        i += 2;
        continue;
      }
      if (c == '(') ++depth;
      if (c == ')') --depth;
      ++i;
      continue;
    }
    if (c == '(') {
      depth = 1;
      ++i;
      continue;
    }
    if (c == '"') {
      for (++i; i < v.size() && v[i] != '"'; ++i) {
        if (v[i] == '\\') ++i;
      }
      ++i;
      continue;
    }
    if (c != '<') {
      ++i;
      continue;
    }
    std::string id;
    size_t j = i + 1;
    for (; j < v.size() && v[j] != '>' && v[j] != '<'; ++j) {
      if (v[j] != ' ' && v[j] != '\t') id += v[j];
    }
    if (j >= v.size()) break;
    if (v[j] == '<') {  // "<<id>" or a stray '<': start again there
      i = j;
      continue;
    }
    if (!id.empty()) out.push_back(std::move(id));
    i = j + 1;
  }
  return out;
}

constexpr size_t kMaxReferences = 256;

// What SORT and THREAD know of one matching message.
struct Item {
  size_t index = 0;     // sequence number - 1
  uint32_t number = 0;  // what the response says: sequence number or UID
  int64_t arrival = 0;  // INTERNALDATE
  // RFC 5256 3 DATE: the Date: header as an instant, else INTERNALDATE.
  int64_t date = 0;
  uint64_t size = 0;
  // Case-mapped keys (only those asked for are filled).
  std::string from, to, cc, subject, display_from, display_to;
  // THREAD REFERENCES.
  bool reply = false;  // the subject was a reply or forward (RFC 5256 2.1)
  std::string message_id;
  std::vector<std::string> references;
};

struct Wanted {
  bool from = false, to = false, cc = false, subject = false, date = false;
  bool display_from = false, display_to = false, references = false;
  bool header() const {
    return from || to || cc || subject || date || display_from || display_to ||
           references;
  }
};

void FillItem(MessageText& t, const Wanted& w, Item* it) {
  auto field = [&](std::string_view name) {
    return t.RawHeader(name).value_or(std::string());
  };
  if (w.from) it->from = CaseMap(FirstMailbox(field("From")));
  if (w.to) it->to = CaseMap(FirstMailbox(field("To")));
  if (w.cc) it->cc = CaseMap(FirstMailbox(field("Cc")));
  if (w.display_from) it->display_from = CaseMap(DisplayKey(field("From")));
  if (w.display_to) it->display_to = CaseMap(DisplayKey(field("To")));
  if (w.subject) it->subject = CaseMap(BaseSubject(field("Subject"), &it->reply));
  if (w.date) {
    if (auto sent = t.SentTime()) it->date = *sent;
  }
  if (w.references) {
    auto ids = MessageIds(field("Message-ID"));
    if (!ids.empty()) it->message_id = std::move(ids.front());
    // RFC 5256 4 REFERENCES step 1: References, else the first id of
    // In-Reply-To.
    it->references = MessageIds(field("References"));
    if (it->references.empty()) {
      ids = MessageIds(field("In-Reply-To"));
      if (!ids.empty()) it->references.push_back(std::move(ids.front()));
    }
    // A hostile References field must not cost much: the last ids are the
    // ones that place the message (its nearest ancestors).
    auto& refs = it->references;
    if (refs.size() > kMaxReferences) {
      refs.erase(refs.begin(), refs.end() - static_cast<ptrdiff_t>(kMaxReferences));
    }
  }
}

// <0, 0, >0 as a is before, with, after b for one key.
template <class T>
int Cmp(const T& a, const T& b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

int CompareKey(const Item& a, const Item& b, SortKey key) {
  switch (key) {
    case SortKey::kArrival: {
      // The sequence number is part of ARRIVAL: messages that arrived in
      // the same second keep their mailbox order, and REVERSE ARRIVAL
      // is the exact reverse of the mailbox.
      int c = Cmp(a.arrival, b.arrival);
      return c != 0 ? c : Cmp(a.index, b.index);
    }
    case SortKey::kCc: return a.cc.compare(b.cc);
    case SortKey::kDate: return Cmp(a.date, b.date);
    case SortKey::kFrom: return a.from.compare(b.from);
    case SortKey::kSize: return Cmp(a.size, b.size);
    case SortKey::kSubject: return a.subject.compare(b.subject);
    case SortKey::kTo: return a.to.compare(b.to);
    case SortKey::kDisplayFrom: return a.display_from.compare(b.display_from);
    case SortKey::kDisplayTo: return a.display_to.compare(b.display_to);
  }
  return 0;
}

// Sent date, then mailbox order: how THREAD orders messages (RFC 5256 4:
// ties go by sequence number).
bool EarlierSent(const Item& a, const Item& b) {
  if (a.date != b.date) return a.date < b.date;
  return a.index < b.index;
}

// "3:5,1,2": the numbers in the order given, ascending runs as ranges
// (RFC 5267 3.1 ALL keeps the sort order).
std::string OrderedSet(const std::vector<uint32_t>& numbers) {
  std::string out;
  for (size_t i = 0; i < numbers.size();) {
    size_t j = i;
    while (j + 1 < numbers.size() && numbers[j + 1] == numbers[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(numbers[i]);
    if (j > i) out += ':' + std::to_string(numbers[j]);
    i = j + 1;
  }
  return out;
}

// --- RFC 5256 4 REFERENCES ---

class ThreadTree {
 public:
  explicit ThreadTree(const std::vector<Item>& items) : items_(items) {}

  // Returns the THREAD response's thread lists.
  std::string Build() {
    LinkMessages();     // step 1
    CollectRoots();     // steps 2 and 3
    Prune();            // step 4
    SortSiblings();     // step 5
    GroupBySubject();   // step 6
    SortSiblings();     // step 7
    std::string out;
    for (int r : roots_) {
      out += '(';
      Render(r, &out);
      out += ')';
    }
    return out;
  }

 private:
  struct Node {
    int item = -1;  // index into items_; -1 for a dummy
    int parent = -1;
    std::vector<int> children;
  };

  int NewNode() {
    nodes_.emplace_back();
    return static_cast<int>(nodes_.size() - 1);
  }
  int Lookup(const std::string& id) {
    auto it = ids_.find(id);
    if (it != ids_.end()) return it->second;
    int n = NewNode();
    ids_.emplace(id, n);
    return n;
  }
  bool Dummy(int n) const { return nodes_[n].item < 0; }
  // Whether `a` is `b` or one of its ancestors.
  bool IsAncestor(int a, int b) const {
    if (a != b && nodes_[a].children.empty()) return false;  // a leaf
    for (int n = b; n >= 0; n = nodes_[n].parent) {
      if (n == a) return true;
    }
    return false;
  }
  void Unlink(int c) {
    int p = nodes_[c].parent;
    if (p < 0) return;
    auto& sib = nodes_[p].children;
    sib.erase(std::find(sib.begin(), sib.end(), c));
    nodes_[c].parent = -1;
  }
  void Link(int p, int c) {
    nodes_[c].parent = p;
    nodes_[p].children.push_back(c);
  }

  void LinkMessages() {
    for (size_t k = 0; k < items_.size(); ++k) {
      const Item& it = items_[k];
      // The message's own container; without a Message-ID, or with one
      // an earlier message had, the message is unique (step 1).
      int m;
      auto found = it.message_id.empty() ? ids_.end() : ids_.find(it.message_id);
      if (it.message_id.empty() || (found != ids_.end() && !Dummy(found->second))) {
        m = NewNode();
      } else {
        m = found != ids_.end() ? found->second : Lookup(it.message_id);
      }
      nodes_[m].item = static_cast<int>(k);
      // Step 1A: each reference the parent of the next, unless the child
      // has a parent already or the link would make a loop.
      int prev = -1;
      for (const std::string& ref : it.references) {
        int r = Lookup(ref);
        if (prev >= 0 && nodes_[r].parent < 0 && !IsAncestor(r, prev)) Link(prev, r);
        prev = r;
      }
      // Step 1B: the last reference is the parent, replacing what a
      // (perhaps truncated) References field of another message said;
      // no references: a root. A link that would loop is not made.
      if (prev < 0) {
        Unlink(m);
      } else if (!IsAncestor(m, prev)) {
        Unlink(m);
        Link(prev, m);
      }
    }
  }

  void CollectRoots() {
    for (size_t n = 0; n < nodes_.size(); ++n) {
      if (nodes_[n].parent < 0) roots_.push_back(static_cast<int>(n));
    }
    ids_.clear();
  }

  // Every node below the roots, each after all of its descendants (so a
  // pass over this list works bottom-up without recursion: a long reply
  // chain must not exhaust the stack).
  std::vector<int> BottomUp() const {
    std::vector<int> order, stack(roots_.begin(), roots_.end());
    while (!stack.empty()) {
      int n = stack.back();
      stack.pop_back();
      if (n < 0) continue;
      order.push_back(n);
      for (int c : nodes_[n].children) stack.push_back(c);
    }
    std::reverse(order.begin(), order.end());
    return order;
  }

  // Step 4: empty dummies go, and the children of a dummy take its place,
  // except at the root where a dummy with several children stays.
  void PruneList(std::vector<int>* list, bool root) {
    std::vector<int> out;
    for (int c : *list) {
      Node& n = nodes_[c];
      if (!Dummy(c) || (root && n.children.size() > 1)) {
        out.push_back(c);
        continue;
      }
      for (int g : n.children) {
        nodes_[g].parent = n.parent;
        out.push_back(g);
      }
      n.children.clear();
    }
    *list = std::move(out);
  }
  void Prune() {
    for (int n : BottomUp()) PruneList(&nodes_[n].children, false);
    PruneList(&roots_, true);
  }

  // The message a node stands for when sorting and grouping: a dummy's
  // first child (RFC 5256 4 steps 5, 6 and 7).
  const Item* First(int n) const {
    while (Dummy(n)) {
      if (nodes_[n].children.empty()) return nullptr;
      n = nodes_[n].children.front();
    }
    return &items_[static_cast<size_t>(nodes_[n].item)];
  }
  void SortList(std::vector<int>* list) {
    std::stable_sort(list->begin(), list->end(), [&](int a, int b) {
      const Item* x = First(a);
      const Item* y = First(b);
      if (!x || !y) return x != nullptr && y == nullptr;
      return EarlierSent(*x, *y);
    });
  }
  void SortSiblings() {
    for (int n : BottomUp()) SortList(&nodes_[n].children);
    SortList(&roots_);
  }

  // Step 6: threads whose roots have the same base subject are merged.
  void GroupBySubject() {
    std::unordered_map<std::string, int> table;
    for (int r : roots_) {  // 6A and 6B
      const Item* it = First(r);
      if (!it || it->subject.empty()) continue;
      auto [pos, added] = table.emplace(it->subject, r);
      if (added) continue;
      int old = pos->second;
      if ((Dummy(r) && !Dummy(old)) ||
          (!Dummy(r) && !Dummy(old) && First(old)->reply && !it->reply)) {
        pos->second = r;
      }
    }
    std::unordered_map<int, size_t> position;  // of each root in roots_
    for (size_t i = 0; i < roots_.size(); ++i) position[roots_[i]] = i;
    for (size_t i = 0; i < roots_.size(); ++i) {  // 6C
      int r = roots_[i];
      if (r < 0) continue;
      const Item* it = First(r);
      if (!it || it->subject.empty()) continue;
      auto entry = table.find(it->subject);
      if (entry == table.end()) continue;
      int t = entry->second;
      if (t == r) continue;
      if (Dummy(r) && Dummy(t)) {
        // Both dummies: the children become siblings.
        for (int c : nodes_[r].children) Link(t, c);
        nodes_[r].children.clear();
      } else if (Dummy(t) ||
                 (!Dummy(r) && it->reply && !First(t)->reply)) {
        // Into the dummy, or a reply under the message it answers.
        Link(t, r);
      } else {
        // Otherwise both go under a new dummy, in the table's place.
        int d = NewNode();
        Link(d, t);
        Link(d, r);
        size_t at = position[t];
        roots_[at] = d;
        position[d] = at;
        entry->second = d;
      }
      roots_[i] = -1;
    }
    roots_.erase(std::remove(roots_.begin(), roots_.end(), -1), roots_.end());
  }

  // RFC 5256 5 thread-list contents for one node: "n", "n m ...", or
  // "n (a)(b)" when it has several children; a dummy shows only its
  // children. Iterative for the same reason as BottomUp().
  void Render(int root, std::string* out) const {
    struct Step {
      int node;           // -1: emit `text`
      const char* text;
    };
    std::vector<Step> stack{{root, nullptr}};
    while (!stack.empty()) {
      Step s = stack.back();
      stack.pop_back();
      if (s.node < 0) {
        *out += s.text;
        continue;
      }
      const Node& n = nodes_[s.node];
      if (!Dummy(s.node)) {
        *out += std::to_string(items_[static_cast<size_t>(n.item)].number);
        if (!n.children.empty()) *out += ' ';
      }
      if (n.children.size() == 1) {
        stack.push_back({n.children.front(), nullptr});
        continue;
      }
      for (auto c = n.children.rbegin(); c != n.children.rend(); ++c) {
        stack.push_back({-1, ")"});
        stack.push_back({*c, nullptr});
        stack.push_back({-1, "("});
      }
    }
  }

  const std::vector<Item>& items_;
  std::vector<Node> nodes_;
  std::unordered_map<std::string, int> ids_;
  std::vector<int> roots_;
};

// RFC 5256 4 ORDEREDSUBJECT: by base subject, then sent date; each run of
// one subject is a thread whose first message is the parent of the rest;
// threads in the order of their first message's sent date.
std::string OrderedSubject(std::vector<Item> items) {
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    int c = a.subject.compare(b.subject);
    return c != 0 ? c < 0 : EarlierSent(a, b);
  });
  std::vector<std::pair<size_t, size_t>> threads;  // [first, end) of items
  for (size_t i = 0; i < items.size();) {
    size_t j = i + 1;
    while (j < items.size() && items[j].subject == items[i].subject) ++j;
    threads.emplace_back(i, j);
    i = j;
  }
  std::stable_sort(threads.begin(), threads.end(), [&](const auto& a, const auto& b) {
    return EarlierSent(items[a.first], items[b.first]);
  });
  std::string out;
  for (auto [first, end] : threads) {
    out += '(' + std::to_string(items[first].number);
    if (end - first == 2) {
      out += ' ' + std::to_string(items[first + 1].number);
    } else if (end - first > 2) {
      out += ' ';
      for (size_t k = first + 1; k < end; ++k) {
        out += '(' + std::to_string(items[k].number) + ')';
      }
    }
    out += ')';
  }
  return out;
}

// One matching message with the keys `want` names read from its header
// (or from the whole message when a search key loaded it); a message that
// cannot be read sorts with empty keys and its INTERNALDATE.
Item MakeItem(const SelectedFolder& f, store::MailStore& store, bool uid, size_t i,
              SearchContext& ctx, const Wanted& want) {
  const store::MessageMeta& m = f.messages[i];
  Item it;
  it.index = i;
  it.number = uid ? m.uid : static_cast<uint32_t>(i + 1);
  it.arrival = m.internal_date;
  it.date = m.internal_date;
  it.size = m.size == store::kUnknownSize ? 0 : m.size;
  if (want.header()) {
    if (!ctx.text && !ctx.load_failed) {
      auto t = LoadHeader(store, f.name, m.uid);
      if (t) ctx.text = std::move(*t);
    }
    if (ctx.text) FillItem(*ctx.text, want, &it);
  }
  return it;
}

}  // namespace

void Session::Impl::Sort(const Command& cmd) {
  const auto& a = cmd.get<SortArgs>();
  if (!CharsetAccepted(a.charset)) {
    No("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
    return;
  }
  Wanted want;
  for (const SortCriterion& c : a.criteria) {
    switch (c.key) {
      case SortKey::kArrival:
      case SortKey::kSize: break;
      case SortKey::kCc: want.cc = true; break;
      case SortKey::kDate: want.date = true; break;
      case SortKey::kFrom: want.from = true; break;
      case SortKey::kSubject: want.subject = true; break;
      case SortKey::kTo: want.to = true; break;
      case SortKey::kDisplayFrom: want.display_from = true; break;
      case SortKey::kDisplayTo: want.display_to = true; break;
    }
  }
  for (const SortCriterion& c : a.criteria) {
    if (c.key == SortKey::kSize) CountSizes();
  }
  bool used_modseq = false;
  uint64_t max_modseq = 0;
  std::vector<Item> items;
  ForEachMatch(a.keys, &used_modseq, [&](size_t i, SearchContext& ctx) {
    items.push_back(MakeItem(*selected, *store, cmd.uid, i, ctx, want));
    max_modseq = std::max(max_modseq, selected->messages[i].modseq);
  });
  if (used_modseq) condstore = true;
  // RFC 5256 3: key by key, REVERSE turning one key around; what compares
  // equal on every key stays in mailbox order.
  std::sort(items.begin(), items.end(), [&](const Item& x, const Item& y) {
    for (const SortCriterion& c : a.criteria) {
      int r = CompareKey(x, y, c.key);
      if (c.reverse) r = -r;
      if (r != 0) return r < 0;
    }
    return x.index < y.index;
  });
  std::vector<uint32_t> numbers;
  numbers.reserve(items.size());
  for (const Item& it : items) numbers.push_back(it.number);

  if (!a.has_return) {
    std::string line = "SORT";
    for (uint32_t n : numbers) line += ' ' + std::to_string(n);
    // RFC 7162 3.1.5: a MODSEQ search key adds the highest mod-sequence.
    if (used_modseq && !numbers.empty()) {
      line += " (MODSEQ " + std::to_string(max_modseq) + ")";
    }
    Untagged(line);
  } else {
    // RFC 5267 3.1 ESORT: MIN and MAX are the first and last in sort
    // order, ALL is every number in sort order; SAVE (RFC 5182) keeps the
    // messages, not their order.
    bool min = false, max = false, count = false, all = a.returns.empty(), save = false;
    for (SearchReturn r : a.returns) {
      min |= r == SearchReturn::kMin;
      max |= r == SearchReturn::kMax;
      count |= r == SearchReturn::kCount;
      all |= r == SearchReturn::kAll;
      save |= r == SearchReturn::kSave;
    }
    if (save) {
      saved.clear();
      for (const Item& it : items) saved.push_back(selected->messages[it.index].uid);
      std::sort(saved.begin(), saved.end());
    }
    if (min || max || count || all) {
      std::string line = "ESEARCH (TAG " + FormatString(tag_, false) + ")";
      if (cmd.uid) line += " UID";
      if (min && !numbers.empty()) line += " MIN " + std::to_string(numbers.front());
      if (max && !numbers.empty()) line += " MAX " + std::to_string(numbers.back());
      if (all && !numbers.empty()) line += " ALL " + OrderedSet(numbers);
      if (count) line += " COUNT " + std::to_string(numbers.size());
      if (used_modseq && !numbers.empty()) {
        line += " MODSEQ " + std::to_string(max_modseq);
      }
      Untagged(line);
    }
  }
  Refresh(cmd.uid);  // RFC 5256 3: no EXPUNGE during SORT, as for SEARCH
  Ok(cmd.uid ? "UID SORT completed" : "SORT completed");
}

void Session::Impl::Thread(const Command& cmd) {
  const auto& a = cmd.get<ThreadArgs>();
  bool references = a.algorithm == "REFERENCES";
  if (!references && a.algorithm != "ORDEREDSUBJECT") {
    Bad("Unknown thread algorithm");
    return;
  }
  if (!CharsetAccepted(a.charset)) {
    No("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
    return;
  }
  Wanted want;
  want.subject = true;
  want.date = true;
  want.references = references;
  bool used_modseq = false;
  std::vector<Item> items;
  ForEachMatch(a.keys, &used_modseq, [&](size_t i, SearchContext& ctx) {
    items.push_back(MakeItem(*selected, *store, cmd.uid, i, ctx, want));
  });
  if (used_modseq) condstore = true;
  std::string line = "THREAD";
  std::string threads = references ? ThreadTree(items).Build() : OrderedSubject(std::move(items));
  if (!threads.empty()) line += ' ' + threads;
  Untagged(line);
  Refresh(cmd.uid);  // RFC 5256 3: no EXPUNGE during THREAD
  Ok(cmd.uid ? "UID THREAD completed" : "THREAD completed");
}

}  // namespace tern::imap
