// memward-settings: prints the settings table (as Markdown for the README, or
// as text) and checks a MEMWARD_CONF string.
//
//   memward-settings --markdown
//   memward-settings --check 'dirty_decay=5s,narenas=8'
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "base/settings.h"

using namespace memward::base;

namespace {

// Prints '|'-separated `choices` as `a`, `b`, `c`: a '|' would end the
// Markdown table's cell.
void PrintChoices(const char* choices) {
  putchar('`');
  for (const char* c = choices; *c != '\0'; c++) {
    if (*c == '|') {
      printf("`, `");
    } else {
      putchar(*c);
    }
  }
  putchar('`');
}

void PrintMarkdown() {
  printf("| setting | default | accepted values | what it does |\n");
  printf("| --- | --- | --- | --- |\n");
  for (const SettingSpec& spec : kSettingSpecs) {
    char fallback[32], low[32], high[32];
    FormatSettingValue(spec, spec.default_value, fallback, sizeof(fallback));
    FormatSettingValue(spec, spec.min_value, low, sizeof(low));
    FormatSettingValue(spec, spec.max_value, high, sizeof(high));
    if (spec.kind == SettingKind::kText && spec.choices != nullptr) {
      printf("| `%s` | `%s` | one of ", spec.name, spec.default_text);
      PrintChoices(spec.choices);
      printf(" | %s |\n", spec.help);
    } else if (spec.kind == SettingKind::kText) {
      printf("| `%s` | `%s` | %s | %s |\n", spec.name, spec.default_text,
             DescribeSettingKind(spec), spec.help);
    } else if (spec.kind == SettingKind::kBool) {
      printf("| `%s` | `%s` | %s | %s |\n", spec.name, fallback, DescribeSettingKind(spec),
             spec.help);
    } else {
      printf("| `%s` | `%s` | %s, `%s` to `%s` | %s |\n", spec.name, fallback,
             DescribeSettingKind(spec), low, high, spec.help);
    }
  }
}

void PrintProblem(const SettingProblem& problem, void* context) {
  char message[kMaxLogMessage];
  FormatSettingProblem(problem, message, sizeof(message));
  fprintf(stderr, "%s\n", message);
}

int Check(const char* text) {
  Settings settings;
  int problems = ParseSettings(text, &settings, PrintProblem, nullptr);
  // The values printed below are then the defaults memward uses.
  char message[kMaxLogMessage];
  if (ResetUnorderedPressureThresholds(&settings, message, sizeof(message)) > 0) {
    fprintf(stderr, "%s\n", message);
    problems++;
  }
  for (const SettingSpec& spec : kSettingSpecs) {
    if (spec.kind == SettingKind::kText) {
      printf("%s=%s\n", spec.name, settings.GetText(spec.id));
      continue;
    }
    char value[32];
    FormatSettingValue(spec, settings.Get(spec.id), value, sizeof(value));
    printf("%s=%s\n", spec.name, value);
  }
  return problems == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "--markdown") == 0) {
    PrintMarkdown();
    return 0;
  }
  if (argc == 3 && strcmp(argv[1], "--check") == 0) return Check(argv[2]);
  const char* usage =
      "usage: memward-settings --markdown | --check 'key=value,...'\n"
      "  --markdown  print the settings table (the README's) as Markdown\n"
      "  --check     parse a MEMWARD_CONF string, print every setting's value, and\n"
      "              exit with 1 if a pair was rejected or the pressure thresholds\n"
      "              do not ascend\n";
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    fputs(usage, stdout);
    return 0;
  }
  fputs(usage, stderr);
  return 2;
}
