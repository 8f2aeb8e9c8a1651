#include "http/protocol/documents.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cstdio>
#include <utility>

#include "common/strings.h"

namespace tern::http {
namespace {

struct Offer {
  const char* type;    // "imap", "pop3", "smtp"
  uint16_t port;
  bool implicit_tls;
};

// Incoming services in the order clients should prefer them: IMAP before
// POP3, implicit TLS before STARTTLS (RFC 8314 3.3 and 4.1).
std::vector<Offer> Incoming(const MailEndpoints& m) {
  std::vector<Offer> out;
  if (m.imaps) out.push_back({"imap", m.imaps, true});
  if (m.imap) out.push_back({"imap", m.imap, false});
  if (m.pop3s) out.push_back({"pop3", m.pop3s, true});
  if (m.pop3) out.push_back({"pop3", m.pop3, false});
  return out;
}

std::vector<Offer> Outgoing(const MailEndpoints& m) {
  std::vector<Offer> out;
  if (m.submissions) out.push_back({"smtp", m.submissions, true});
  if (m.submission) out.push_back({"smtp", m.submission, false});
  return out;
}

// A name-based UUID (the layout of RFC 9562 5.8, version 8) from a hash,
// so the same account always gets the same profile identifiers.
std::string StableUuid(std::string_view seed) {
  unsigned char h[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(seed.data()), seed.size(), h);
  h[6] = static_cast<unsigned char>((h[6] & 0x0f) | 0x80);
  h[8] = static_cast<unsigned char>((h[8] & 0x3f) | 0x80);
  char buf[40];
  std::snprintf(buf, sizeof buf,
                "%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-%02X%02X%02X%02X%02X%02X",
                h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11],
                h[12], h[13], h[14], h[15]);
  return buf;
}

// Character data with the predefined entities and character references
// replaced (XML 1.0 4.6, 4.1); an unknown entity stays as written.
std::string XmlUnescape(std::string_view text) {
  static constexpr std::pair<std::string_view, char> kEntities[] = {
      {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '&') {
      out += text[i];
      continue;
    }
    bool done = false;
    for (const auto& [name, c] : kEntities) {
      if (text.substr(i, name.size()) == name) {
        out += c;
        i += name.size() - 1;
        done = true;
        break;
      }
    }
    if (!done && text.substr(i, 2) == "&#") {
      size_t semi = text.find(';', i);
      std::string_view num =
          semi == std::string_view::npos ? "" : text.substr(i + 2, semi - i - 2);
      bool hex = !num.empty() && (num[0] == 'x' || num[0] == 'X');
      if (hex) num.remove_prefix(1);
      unsigned long v = 0;
      bool ok = !num.empty() && num.size() <= 6;
      for (char d : num) {
        int digit = (d >= '0' && d <= '9') ? d - '0'
                    : hex && (d | 0x20) >= 'a' && (d | 0x20) <= 'f' ? (d | 0x20) - 'a' + 10
                                                                     : -1;
        if (digit < 0) ok = false;
        v = v * (hex ? 16 : 10) + static_cast<unsigned long>(std::max(digit, 0));
      }
      // ASCII only: an address with other characters is not ours anyway.
      if (ok && v > 0 && v < 0x80) {
        out += static_cast<char>(v);
        i = semi;
        done = true;
      }
    }
    if (!done) out += '&';
  }
  return out;
}

// The text between <Name> and </Name> (any namespace prefix), first match.
std::optional<std::string> ElementText(std::string_view xml, std::string_view name) {
  size_t at = 0;
  while ((at = xml.find(name, at)) != std::string_view::npos) {
    // An opening tag: '<' or ':' just before, '>' just after.
    bool opens = at > 0 && (xml[at - 1] == '<' || xml[at - 1] == ':') &&
                 at + name.size() < xml.size() && xml[at + name.size()] == '>';
    if (opens) {
      size_t start = at + name.size() + 1;
      size_t end = xml.find('<', start);
      if (end == std::string_view::npos) return std::nullopt;
      return XmlUnescape(Trim(xml.substr(start, end - start)));
    }
    at += name.size();
  }
  return std::nullopt;
}

}  // namespace

std::string XmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string AutoconfigXml(const MailEndpoints& m) {
  // The element names and values are those Thunderbird's autoconfig
  // reader takes (config-v1.1): socketType SSL or STARTTLS, and
  // password-cleartext, which is safe here because every offered port is
  // TLS (STARTTLS ports refuse AUTH before it).
  std::string d = XmlEscape(m.domain), h = XmlEscape(m.hostname);
  std::string x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<clientConfig version=\"1.1\">\n"
                  "  <emailProvider id=\"" + d + "\">\n"
                  "    <domain>" + d + "</domain>\n"
                  "    <displayName>" + d + " mail</displayName>\n"
                  "    <displayShortName>" + d + "</displayShortName>\n";
  auto server = [&](const char* element, const Offer& o) {
    x += std::string("    <") + element + " type=\"" + o.type + "\">\n" +
         "      <hostname>" + h + "</hostname>\n" +
         "      <port>" + std::to_string(o.port) + "</port>\n" +
         "      <socketType>" + (o.implicit_tls ? "SSL" : "STARTTLS") + "</socketType>\n" +
         "      <authentication>password-cleartext</authentication>\n" +
         "      <username>%EMAILADDRESS%</username>\n" +
         "    </" + element + ">\n";
  };
  for (const Offer& o : Incoming(m)) server("incomingServer", o);
  for (const Offer& o : Outgoing(m)) server("outgoingServer", o);
  x += "  </emailProvider>\n</clientConfig>\n";
  return x;
}

std::optional<std::string> AutodiscoverRequestEmail(std::string_view body) {
  auto email = ElementText(body, "EMailAddress");
  if (!email || email->empty()) return std::nullopt;
  return email;
}

std::string AutodiscoverXml(const MailEndpoints& m, std::string_view email) {
  std::string h = XmlEscape(m.hostname), e = XmlEscape(email);
  std::string x =
      "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
      "<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/"
      "responseschema/2006\">\n"
      "  <Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/"
      "responseschema/2006a\">\n"
      "    <Account>\n"
      "      <AccountType>email</AccountType>\n"
      "      <Action>settings</Action>\n";
  auto protocol = [&](const char* type, const Offer& o) {
    x += std::string("      <Protocol>\n") + "        <Type>" + type + "</Type>\n" +
         "        <Server>" + h + "</Server>\n" +
         "        <Port>" + std::to_string(o.port) + "</Port>\n" +
         "        <LoginName>" + e + "</LoginName>\n" +
         "        <DomainRequired>off</DomainRequired>\n" +
         "        <SPA>off</SPA>\n";
    // SSL on: TLS from the first octet; Encryption TLS: STARTTLS.
    if (o.implicit_tls) {
      x += "        <SSL>on</SSL>\n";
    } else {
      x += "        <Encryption>TLS</Encryption>\n";
    }
    x += "        <AuthRequired>on</AuthRequired>\n      </Protocol>\n";
  };
  // One entry per protocol type: the preferred port of each.
  bool imap = false, pop3 = false;
  for (const Offer& o : Incoming(m)) {
    bool is_imap = std::string_view(o.type) == "imap";
    if (is_imap && !imap) {
      protocol("IMAP", o);
      imap = true;
    } else if (!is_imap && !pop3) {
      protocol("POP3", o);
      pop3 = true;
    }
  }
  auto out = Outgoing(m);
  if (!out.empty()) protocol("SMTP", out.front());
  x += "    </Account>\n  </Response>\n</Autodiscover>\n";
  return x;
}

std::string MobileConfig(const MailEndpoints& m, std::string_view email) {
  auto incoming = Incoming(m);
  auto outgoing = Outgoing(m);
  std::string e = XmlEscape(email), h = XmlEscape(m.hostname), d = XmlEscape(m.domain);
  std::string reversed;  // "org.example" for identifiers
  for (std::string_view label : Split(m.domain, '.')) {
    reversed = reversed.empty() ? std::string(label) : std::string(label) + "." + reversed;
  }
  // plist entries, `pad` spaces deep.
  auto key = [](std::string_view k, std::string_view v, size_t pad = 6) {
    std::string in(pad, ' ');
    return in + "<key>" + std::string(k) + "</key>\n" + in + "<string>" + std::string(v) +
           "</string>\n";
  };
  auto boolean = [](std::string_view k, bool v, size_t pad = 6) {
    std::string in(pad, ' ');
    return in + "<key>" + std::string(k) + "</key>\n" + in + (v ? "<true/>" : "<false/>") +
           "\n";
  };
  auto integer = [](std::string_view k, uint32_t v, size_t pad = 6) {
    std::string in(pad, ' ');
    return in + "<key>" + std::string(k) + "</key>\n" + in + "<integer>" +
           std::to_string(v) + "</integer>\n";
  };
  std::string x =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" "
      "\"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n"
      "<plist version=\"1.0\">\n<dict>\n"
      "  <key>PayloadContent</key>\n  <array>\n    <dict>\n";
  // An account needs both directions; without either the array is empty
  // and the profile installs nothing.
  if (!incoming.empty() && !outgoing.empty()) {
    const Offer& in = incoming.front();
    const Offer& out = outgoing.front();
    x += key("EmailAccountDescription", d);
    x += key("EmailAccountName", e);
    x += key("EmailAccountType",
             std::string_view(in.type) == "imap" ? "EmailTypeIMAP" : "EmailTypePOP");
    x += key("EmailAddress", e);
    x += key("IncomingMailServerAuthentication", "EmailAuthPassword");
    x += key("IncomingMailServerHostName", h);
    x += integer("IncomingMailServerPortNumber", in.port);
    x += boolean("IncomingMailServerUseSSL", true);
    x += key("IncomingMailServerUsername", e);
    x += key("OutgoingMailServerAuthentication", "EmailAuthPassword");
    x += key("OutgoingMailServerHostName", h);
    x += integer("OutgoingMailServerPortNumber", out.port);
    x += boolean("OutgoingMailServerUseSSL", true);
    x += key("OutgoingMailServerUsername", e);
    x += boolean("OutgoingPasswordSameAsIncomingPassword", true);
    x += key("PayloadDescription", "Mail account " + e);
    x += key("PayloadDisplayName", e);
    x += key("PayloadIdentifier", XmlEscape(reversed) + ".tern.mail." +
                                      StableUuid(std::string(email) + "/account"));
    x += key("PayloadType", "com.apple.mail.managed");
    x += key("PayloadUUID", StableUuid(std::string(email) + "/account"));
    x += integer("PayloadVersion", 1);
  }
  x += "    </dict>\n  </array>\n";
  x += key("PayloadDescription", "Mail settings for " + e, 2);
  x += key("PayloadDisplayName", d + " mail", 2);
  x += key("PayloadIdentifier",
           XmlEscape(reversed) + ".tern." + StableUuid(std::string(email) + "/profile"), 2);
  x += key("PayloadOrganization", d, 2);
  x += boolean("PayloadRemovalDisallowed", false, 2);
  x += key("PayloadType", "Configuration", 2);
  x += key("PayloadUUID", StableUuid(std::string(email) + "/profile"), 2);
  x += integer("PayloadVersion", 1, 2);
  x += "</dict>\n</plist>\n";
  return x;
}

std::string MtaStsPolicy(std::string_view mode, const std::vector<std::string>& mx,
                         uint32_t max_age) {
  // RFC 8461 3.2: "version" first; key/value pairs, one per line, CRLF.
  std::string p = "version: STSv1\r\nmode: " + std::string(mode) + "\r\n";
  for (const std::string& host : mx) p += "mx: " + host + "\r\n";
  p += "max_age: " + std::to_string(max_age) + "\r\n";
  return p;
}

}  // namespace tern::http
