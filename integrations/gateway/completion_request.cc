#include "completion_request.h"

#include <boost/json.hpp>

#include <algorithm>
#include <vector>

namespace memward::gateway {
namespace {

namespace json = boost::json;

void AppendCanonical(const json::value& value, std::string& out) {
  switch (value.kind()) {
    case json::kind::object: {
      const json::object& object = value.as_object();
      std::vector<const json::key_value_pair*> fields;
      fields.reserve(object.size());
      for (const auto& field : object) fields.push_back(&field);
      std::sort(fields.begin(), fields.end(),
                [](const auto* a, const auto* b) { return a->key() < b->key(); });
      out.push_back('{');
      for (std::size_t i = 0; i < fields.size(); ++i) {
        if (i != 0) out.push_back(',');
        out += json::serialize(json::string_view(fields[i]->key()));
        out.push_back(':');
        AppendCanonical(fields[i]->value(), out);
      }
      out.push_back('}');
      break;
    }
    case json::kind::array: {
      out.push_back('[');
      bool first = true;
      for (const json::value& item : value.as_array()) {
        if (!first) out.push_back(',');
        first = false;
        AppendCanonical(item, out);
      }
      out.push_back(']');
      break;
    }
    default:
      out += json::serialize(value);
  }
}

}  // namespace

std::variant<std::monostate, ApiError> ParseCompletion(std::string_view body, CompletionKind kind,
                                                       bool use_memory_resource,
                                                       CompletionRequest& request) {
  json::storage_ptr storage;
  if (use_memory_resource) {
    // Sized from the body: a parsed document takes a few times its text.
    request.resource.emplace(std::max<std::size_t>(1024, body.size() * 2));
    storage = json::storage_ptr(&*request.resource);
  }
  boost::system::error_code error;
  request.document = json::parse(body, error, storage);
  if (error) {
    return InvalidRequest("the request body is not valid JSON: " + error.message(), {},
                          "invalid_json");
  }
  json::object* object = request.document.if_object();
  if (object == nullptr) return InvalidRequest("the request body must be a JSON object");

  const json::value* model = object->if_contains("model");
  if (model == nullptr || !model->is_string() || model->as_string().empty()) {
    return InvalidRequest("\"model\" must be a non-empty string", "model");
  }
  request.model = model->as_string();

  if (kind == CompletionKind::kChat) {
    const json::value* messages = object->if_contains("messages");
    if (messages == nullptr || !messages->is_array() || messages->as_array().empty()) {
      return InvalidRequest("\"messages\" must be a non-empty array", "messages");
    }
  } else {
    const json::value* prompt = object->if_contains("prompt");
    if (prompt == nullptr || !(prompt->is_string() || prompt->is_array())) {
      return InvalidRequest("\"prompt\" must be a string or an array", "prompt");
    }
  }

  if (const json::value* stream = object->if_contains("stream"); stream != nullptr) {
    if (!stream->is_bool() && !stream->is_null()) {
      return InvalidRequest("\"stream\" must be true or false", "stream");
    }
    request.stream = stream->is_bool() && stream->as_bool();
  }
  return std::monostate{};
}

std::string UpstreamBody(CompletionRequest& request, std::string_view original,
                         std::string_view upstream_model) {
  if (upstream_model == request.model) return std::string(original);
  json::object& object = request.document.as_object();
  object["model"] = upstream_model;
  request.model = {};  // the view died with the replaced string
  return json::serialize(request.document);
}

std::string CacheKey(std::string_view tenant, std::string_view path,
                     const json::value& document) {
  std::string key;
  key.reserve(tenant.size() + path.size() + 256);
  key.append(tenant).push_back('\n');
  key.append(path).push_back('\n');
  AppendCanonical(document, key);
  return key;
}

}  // namespace memward::gateway
